"""Amazon OAuth (website authorization workflow): start, callback, disconnect.

Security notes, because this is where a tenant hands us the keys to its Seller Central account:
- the `state` is 256 random bits, stored only as its SHA-256, bound to tenant and user, valid
  `AMAZON_OAUTH_STATE_TTL` seconds and consumed by one conditional UPDATE (`used_at IS NULL AND
  expires_at > now`), so of two concurrent callbacks with one state exactly one wins;
- the state is also bound to the browser that started the flow (RFC 9700 §4.7.1): start sets a
  random browser key in an HttpOnly cookie and stores its SHA-256 with the state; a callback from
  any other browser (an authorization link forwarded to someone else) is refused without spending
  the state, so a seller cannot be tricked into connecting their account to another tenant;
- no transaction is open while LWA is called;
- the refresh token goes to the secret store at a per-tenant, per-seller path; the database only
  holds that path (`secret_ref`); no log line, error text or API answer contains a token, a code
  or the app's client secret.
Log lines start with "Amazon OAuth" and failures contain "error" (the runbook greps
`amazon oauth.*error`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from keybuzz.errors import ApplicationError, ForbiddenError, NotFoundError, SecretStoreUnavailableError
from keybuzz.logging import log_context_bind
from keybuzz.models import Membership, Tenant
from keybuzz.secrets import SecretStoreError
from marketplaces.amazon import lwa
from marketplaces.amazon.app import (
    AmazonApp,
    AppCredentialsMissing,
    AppCredentialsUnavailable,
    load_app_credentials,
    mock_app,
    mock_enabled,
)
from marketplaces.amazon.refresh_tokens import refresh_token_delete, refresh_token_path, refresh_token_store
from marketplaces.amazon.regions import (
    Marketplace,
    UnknownMarketplace,
    UnknownRegion,
    consent_url,
    find_marketplace,
    normalize_region,
    seller_central_for,
)
from marketplaces.errors import (
    AuthorizationDenied,
    CredentialsMissingError,
    InvalidState,
    TokenExchangeRejected,
    TokenExchangeUnavailable,
)
from marketplaces.models import ConnectionStatus, MarketplaceConnection, MarketplaceType, OAuthState
from marketplaces.selectors import connection_effective_status
from marketplaces.services.mailbox import mailbox_settings_remove

logger = logging.getLogger("marketplaces.oauth")

STATE_BYTES = 32  # 256 bits
BROWSER_KEY_BYTES = 32
OTHER_BROWSER = {"reason": "other_browser"}
EXPIRED_STATE_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class OAuthStart:
    auth_url: str
    expires_at: datetime
    region: str
    marketplace_id: str
    browser_key: str  # for the browser's cookie; never stored in clear


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def browser_key_valid(key: str | None) -> TypeGuard[str]:
    """A key this server could have issued (url-safe base64 of 32 bytes), to reuse or to check."""
    return key is not None and len(key) == 43 and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)


# --- The app, real or the local fake ---------------------------------------------------------


def _mock_urls(site_url: str) -> tuple[str, str, str]:
    base = site_url.rstrip("/")
    consent = reverse("amazon-mock-consent")
    return (
        base + consent.removesuffix("/apps/authorize/consent"),
        base + reverse("amazon-mock-token"),
        base + reverse("amazon-oauth-callback"),
    )


def amazon_app_get(*, site_url: str = "") -> AmazonApp:
    """The SP-API app to use now. With DEBUG and AMAZON_USE_MOCK, the local fake Amazon's app."""
    if mock_enabled():
        _, token_url, callback_url = _mock_urls(site_url)
        return mock_app(token_url=token_url, redirect_uri=callback_url)
    try:
        return load_app_credentials()
    except AppCredentialsMissing as exc:
        raise CredentialsMissingError(str(exc)) from None
    except AppCredentialsUnavailable as exc:
        raise SecretStoreUnavailableError(str(exc)) from None


# --- Start -------------------------------------------------------------------------------------


def _resolve_target(*, app: AmazonApp, marketplace: str, region: str) -> tuple[str, Marketplace | None]:
    chosen: Marketplace | None = None
    if marketplace:
        try:
            chosen = find_marketplace(marketplace)
        except UnknownMarketplace as exc:
            raise ApplicationError(str(exc), code="invalid_marketplace") from None
    if region:
        try:
            region = normalize_region(region)
        except UnknownRegion as exc:
            raise ApplicationError(str(exc), code="invalid_region") from None
        if chosen is not None and chosen.region != region:
            raise ApplicationError(
                f"Marketplace {chosen.country} is in region {chosen.region}, not {region}", code="invalid_region"
            )
    return (chosen.region if chosen else region or app.region), chosen


def amazon_oauth_start(
    *,
    tenant: Tenant,
    user: User,
    marketplace: str = "",
    region: str = "",
    site_url: str = "",
    browser_key: str | None = None,
) -> OAuthStart:
    """Record a single-use state for (tenant, user, this browser) and build the Seller Central
    consent URL. `browser_key` is the key the browser already holds (its cookie), so several tabs
    of one browser can each start a flow; without one, a new key is made."""
    app = amazon_app_get(site_url=site_url)
    target_region, chosen = _resolve_target(app=app, marketplace=marketplace, region=region)

    if not browser_key_valid(browser_key):
        browser_key = secrets.token_urlsafe(BROWSER_KEY_BYTES)
    state = secrets.token_urlsafe(STATE_BYTES)
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.AMAZON_OAUTH_STATE_TTL)
    OAuthState.objects.create(
        state_hash=state_hash(state),
        browser_hash=state_hash(browser_key),
        tenant=tenant,
        user=user,
        type=MarketplaceType.AMAZON,
        region=target_region,
        marketplace_id=chosen.marketplace_id if chosen else "",
        expires_at=expires_at,
    )
    # Housekeeping: states are useless once expired; keep a day of them for the admin's eyes.
    OAuthState.objects.filter(expires_at__lt=now - EXPIRED_STATE_RETENTION).delete()

    base = _mock_urls(site_url)[0] if app.is_mock else seller_central_for(region=target_region, marketplace=chosen)
    url = consent_url(
        base=base, application_id=app.application_id, state=state, draft=app.draft, redirect_uri=app.redirect_uri
    )
    logger.info(
        "Amazon OAuth start: tenant %s, user %s, region %s, marketplace %s, app %s%s",
        tenant.id,
        user.pk,
        target_region,
        chosen.country if chosen else "-",
        app.app_source,
        " (mock)" if app.is_mock else "",
    )
    return OAuthStart(
        auth_url=url,
        expires_at=expires_at,
        region=target_region,
        marketplace_id=chosen.marketplace_id if chosen else "",
        browser_key=browser_key,
    )


# --- Callback ----------------------------------------------------------------------------------


def oauth_state_consume(*, state: str, browser_key: str | None) -> OAuthState:
    """Mark the state used, atomically: one UPDATE whose WHERE re-checks `used_at IS NULL`, the
    expiry and the browser, so a concurrent second consumer updates 0 rows (on PostgreSQL it waits
    for the first's row lock, then re-evaluates the condition). A state presented by another
    browser is refused and stays usable by its own."""
    digest = state_hash(state)
    browser = state_hash(browser_key) if browser_key_valid(browser_key) else ""
    now = timezone.now()
    won = 0
    if browser:
        won = OAuthState.objects.filter(
            state_hash=digest, browser_hash=browser, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
    row = OAuthState.objects.select_related("tenant", "user").filter(state_hash=digest).first()
    if won != 1 or row is None:
        if row is None:
            reason = "unknown"
        elif row.used_at:
            reason = "already used"
        elif row.expires_at <= now:
            reason = "expired"
        else:
            raise InvalidState(
                "Invalid state: started in another browser (finish the Amazon connection in the browser "
                "that started it, or start again here)",
                details=OTHER_BROWSER,
            )
        raise InvalidState(f"Invalid state: {reason} (start the Amazon connection again)")
    return row


def _check_still_allowed(row: OAuthState) -> None:
    """The state was issued to an admin of an active tenant; both may have changed since."""
    if not row.tenant.is_active:
        raise ForbiddenError("This tenant is deactivated.", code="tenant_inactive")
    membership = Membership.objects.filter(tenant=row.tenant, user=row.user, user__is_active=True).first()
    if membership is None or not membership.is_admin:
        raise ForbiddenError("Connecting Amazon needs the owner or admin role in this tenant.", code="role_forbidden")


def _record_failure(*, row: OAuthState, selling_partner_id: str, app: AmazonApp, error: str) -> None:
    """Keep the failure visible on the seller's connection (ERROR + last_error). A connection that
    is still working with the current app keeps CONNECTED: a failed re-authorization must not stop
    the polling of a healthy account; its last_error still tells what happened."""
    now = timezone.now()
    with transaction.atomic():
        connection, created = MarketplaceConnection.objects.select_for_update().get_or_create(
            tenant=row.tenant,
            type=MarketplaceType.AMAZON,
            selling_partner_id=selling_partner_id,
            defaults={
                "status": ConnectionStatus.ERROR,
                "region": row.region,
                "app_source": app.app_source,
                "marketplace_ids": [row.marketplace_id] if row.marketplace_id else [],
            },
        )
        log_context_bind(connection_id=connection.id)
        connection.last_error = error
        connection.last_error_at = now
        fields = ["last_error", "last_error_at", "updated_at"]
        if not created and connection_effective_status(connection) != ConnectionStatus.CONNECTED:
            connection.status = ConnectionStatus.ERROR
            fields.append("status")
        connection.save(update_fields=fields)


def _connection_connect(
    *, row: OAuthState, selling_partner_id: str, app: AmazonApp, secret_ref: str
) -> MarketplaceConnection:
    now = timezone.now()
    with transaction.atomic():
        connection, _ = MarketplaceConnection.objects.select_for_update().get_or_create(
            tenant=row.tenant,
            type=MarketplaceType.AMAZON,
            selling_partner_id=selling_partner_id,
            defaults={"region": row.region},
        )
        marketplaces = list(connection.marketplace_ids or [])
        if row.marketplace_id and row.marketplace_id not in marketplaces:
            marketplaces.append(row.marketplace_id)
        connection.status = ConnectionStatus.CONNECTED
        connection.region = row.region
        connection.marketplace_ids = marketplaces
        connection.app_source = app.app_source
        connection.secret_ref = secret_ref
        connection.connected_at = now
        connection.disconnected_at = None
        connection.last_error = ""
        connection.last_error_at = None
        connection.consecutive_failures = 0
        connection.next_poll_at = now  # poll a (re)connected account at the next run
        connection.spapi_forbidden_at = None  # a new consent may grant the roles that were missing
        connection.spapi_error = ""
        connection.save(
            update_fields=[
                "status",
                "region",
                "marketplace_ids",
                "app_source",
                "secret_ref",
                "connected_at",
                "disconnected_at",
                "last_error",
                "last_error_at",
                "consecutive_failures",
                "next_poll_at",
                "updated_at",
                "spapi_forbidden_at",
                "spapi_error",
            ]
        )
    return connection


def amazon_oauth_callback(
    *,
    state: str,
    browser_key: str | None,
    code: str = "",
    selling_partner_id: str = "",
    error: str = "",
    site_url: str = "",
) -> MarketplaceConnection:
    """Consume the state, exchange the code at LWA, store the refresh token, mark CONNECTED."""
    if error:
        # The seller declined (or Amazon refused): burn the state so the URL cannot be replayed.
        error = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:64] or "unknown"  # it came from the query string
        try:
            row = oauth_state_consume(state=state, browser_key=browser_key)
            who = f"tenant {row.tenant_id}"
        except InvalidState as exc:
            if exc.details == OTHER_BROWSER:  # not this browser's flow to end: its state stays usable
                logger.warning("Amazon OAuth callback error: %s", exc.message)
                raise
            who = "unknown state"
        logger.warning("Amazon OAuth callback error: Amazon returned error=%s (%s)", error, who)
        raise AuthorizationDenied(f"Amazon did not authorize KeyBuzz: {error}")

    # Before the state is spent: a configuration fault must not cost the seller their attempt.
    app = amazon_app_get(site_url=site_url)
    try:
        row = oauth_state_consume(state=state, browser_key=browser_key)
    except InvalidState as exc:
        logger.warning("Amazon OAuth callback error: %s", exc.message)
        raise
    log_context_bind(tenant_id=row.tenant_id)  # the state names the tenant: later lines carry it
    try:
        _check_still_allowed(row)
    except ForbiddenError as exc:
        logger.warning(
            "Amazon OAuth callback error: tenant %s user %s refused: %s", row.tenant_id, row.user_id, exc.code
        )
        raise

    # No transaction is open here: the HTTP call to Amazon must not hold row locks.
    try:
        tokens = lwa.exchange_authorization_code(
            code=code,
            client_id=app.client_id,
            client_secret=app.client_secret,
            redirect_uri=app.redirect_uri,
            token_url=app.lwa_token_url or None,
        )
    except lwa.LwaError as exc:
        message = f"Token exchange failed: {exc}"
        _record_failure(row=row, selling_partner_id=selling_partner_id, app=app, error=message)
        logger.error(
            "Amazon OAuth error: %s (tenant %s, seller %s, app %s)",
            message,
            row.tenant_id,
            selling_partner_id,
            app.app_source,
        )
        # Rejected: the code is spent or wrong, the seller starts again. Otherwise Amazon could not answer.
        failure = TokenExchangeRejected if isinstance(exc, lwa.LwaRejected) else TokenExchangeUnavailable
        raise failure(message, details={"error": exc.code}) from None

    path = refresh_token_path(tenant_id=row.tenant_id, selling_partner_id=selling_partner_id)
    try:
        refresh_token_store(
            path=path,
            refresh_token=tokens.refresh_token or "",
            selling_partner_id=selling_partner_id,
            app_source=app.app_source,
            region=row.region,
        )
    except SecretStoreError as exc:
        message = f"Secret store write failed: {exc}"
        _record_failure(row=row, selling_partner_id=selling_partner_id, app=app, error=message)
        logger.error("Amazon OAuth error: %s (tenant %s, seller %s)", message, row.tenant_id, selling_partner_id)
        raise SecretStoreUnavailableError(f"Could not store the Amazon credentials: {exc}") from None

    connection = _connection_connect(row=row, selling_partner_id=selling_partner_id, app=app, secret_ref=path)
    log_context_bind(connection_id=connection.id)
    logger.info(
        "Amazon OAuth callback: tenant %s connected seller %s (region %s, app %s)",
        row.tenant_id,
        selling_partner_id,
        row.region,
        app.app_source,
    )
    return connection


# --- Disconnect -------------------------------------------------------------------------------


def amazon_disconnect(*, tenant: Tenant, selling_partner_id: str = "") -> list[MarketplaceConnection]:
    """Mark the seller's connection DISCONNECTED, then delete its refresh token. Idempotent: an
    already disconnected connection is answered as is (and a token left behind is deleted now)."""
    connections = MarketplaceConnection.objects.filter(tenant=tenant, type=MarketplaceType.AMAZON)
    if selling_partner_id:
        targets = list(connections.filter(selling_partner_id=selling_partner_id))
        if not targets:
            raise NotFoundError(
                f"No Amazon connection for seller {selling_partner_id} in this tenant.", code="connection_not_found"
            )
    else:
        active = list(connections.exclude(status=ConnectionStatus.DISCONNECTED))
        if len(active) > 1:
            raise ApplicationError(
                "This tenant has several Amazon connections; pass sellingPartnerId.",
                code="seller_required",
                details={"sellers": sorted(c.selling_partner_id for c in active)},
            )
        targets = active or list(connections)  # all already disconnected: answer them again
        if not targets:
            raise NotFoundError("This tenant has no Amazon connection.", code="connection_not_found")

    now = timezone.now()
    for connection in targets:
        if connection.status != ConnectionStatus.DISCONNECTED:
            # Stop the polling first; the token deletion below may be retried.
            connection.status = ConnectionStatus.DISCONNECTED
            connection.disconnected_at = now
            connection.next_poll_at = None
            connection.save(update_fields=["status", "disconnected_at", "next_poll_at", "updated_at"])
            logger.info("Amazon OAuth disconnect: tenant %s seller %s", tenant.id, connection.selling_partner_id)
        if connection.secret_ref:
            try:
                refresh_token_delete(connection.secret_ref)
            except SecretStoreError as exc:
                logger.error(
                    "Amazon OAuth error: disconnect of tenant %s seller %s could not delete the token: %s",
                    tenant.id,
                    connection.selling_partner_id,
                    exc,
                )
                raise SecretStoreUnavailableError(
                    f"Disconnected, but the stored Amazon token could not be deleted yet ({exc}); retry."
                ) from None
            connection.secret_ref = ""
            connection.save(update_fields=["secret_ref", "updated_at"])
        # The seller's mailbox password goes too: a disconnected seller leaves no credentials here.
        mailbox_settings_remove(connection=connection)
    return targets
