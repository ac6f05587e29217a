"""State-changing operations of the platform core: tenants, members, tokens, the superadmin."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.tokens import RefreshToken

from keybuzz.errors import ApplicationError, AuthenticationError, ForbiddenError
from keybuzz.models import SIGNATURE_MAX_LENGTH, LoggedOutSession, Membership, ReplyTone, Role, Tenant
from keybuzz.tokens import (
    PASSWORD_CLAIM,
    ROLE_CLAIM,
    SESSION_CLAIM,
    TENANT_CLAIM,
    membership_check,
    password_version_of,
    session_id_claim,
    user_id_claim,
)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    tenant: Tenant
    role: str


@dataclass(frozen=True)
class TenantSetup:
    tenant: Tenant
    tenant_created: bool
    user_created: bool


@transaction.atomic
def tenant_create(
    *, slug: str, name: str, admin_username: str | None = None, admin_password: str | None = None, admin_email: str = ""
) -> TenantSetup:
    """Create the tenant (or update its name) and make `admin_username` its owner. Idempotent."""
    tenant, tenant_created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
    if not tenant_created and tenant.name != name:
        tenant.name = name
        tenant.save(update_fields=["name", "updated_at"])

    user_created = False
    if admin_username:
        user, user_created = User.objects.get_or_create(username=admin_username, defaults={"email": admin_email})
        if admin_password and (user_created or not user.check_password(admin_password)):
            user.set_password(admin_password)
            user.save(update_fields=["password"])
        Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": Role.OWNER})
    return TenantSetup(tenant=tenant, tenant_created=tenant_created, user_created=user_created)


@transaction.atomic
def superadmin_ensure(*, username: str, email: str, password: str) -> bool:
    """Create or update the KeyBuzz superadmin. Returns True when the user was created."""
    if not password:
        raise ApplicationError("KEYBUZZ_SUPERADMIN_PASSWORD is not set", code="superadmin_password_missing")
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    user.email = email
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    if created or not user.check_password(password):
        user.set_password(password)
    user.save(update_fields=["email", "is_staff", "is_superuser", "is_active", "password"])
    return created


def _token_pair(*, membership: Membership, session_id: uuid.UUID | None = None) -> TokenPair:
    """A refresh token and its first access token; a new login session unless `session_id` goes on."""
    refresh = RefreshToken.for_user(membership.user)  # recorded as outstanding (the blacklist app)
    refresh[SESSION_CLAIM] = str(session_id or uuid.uuid4())  # copied into the access tokens
    refresh[TENANT_CLAIM] = str(membership.tenant_id)
    refresh[ROLE_CLAIM] = membership.role
    refresh[PASSWORD_CLAIM] = password_version_of(membership.user)
    return TokenPair(
        access=str(refresh.access_token), refresh=str(refresh), tenant=membership.tenant, role=membership.role
    )


def token_obtain(*, username: str, password: str, request: HttpRequest, tenant_slug: str | None = None) -> TokenPair:
    """Check the credentials and issue a token pair bound to one of the user's tenants.

    `request` lets the login throttle (django-axes) count a failure against the account and the
    client's address; once locked out, even the right password is refused until the lockout ends
    (the API answers 429 too_many_attempts: keybuzz.throttling)."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        raise AuthenticationError("Wrong username or password.", code="invalid_credentials")
    assert isinstance(user, User)
    # A login, as the admin's is: the throttle starts counting failures again (and last_login moves).
    user_logged_in.send(sender=User, request=request, user=user)
    memberships = list(
        Membership.objects.select_related("tenant", "user")
        .filter(user=user, tenant__is_active=True)
        .order_by("tenant__slug")
    )
    if tenant_slug:
        memberships = [m for m in memberships if m.tenant.slug == tenant_slug]
        if not memberships:
            raise ForbiddenError(f"You are not a member of an active tenant '{tenant_slug}'.", code="not_a_member")
    if not memberships:
        raise ForbiddenError("This user belongs to no active tenant.", code="no_tenant")
    if len(memberships) > 1:
        raise ApplicationError(
            "This user belongs to several tenants; pass `tenant` with one of their slugs.",
            code="tenant_required",
            details={"tenants": [m.tenant.slug for m in memberships]},
        )
    return _token_pair(membership=memberships[0])


def _refresh_token(raw: str) -> RefreshToken:
    """The refresh token, checked: signature, expiry, not revoked, a user id that can be one."""
    try:
        token = RefreshToken(raw)  # type: ignore[arg-type]  # simplejwt annotates a Token; it parses a str
    except TokenError as exc:
        raise AuthenticationError(str(exc), code="token_not_valid") from None
    user_id_claim(token.get("user_id"))
    return token


def token_refresh(*, refresh: str) -> TokenPair:
    """A new token pair for a refresh token, which is used up: re-checks the membership (and the
    password version), takes the role from the database, and revokes the token it was given, so
    the same refresh token never works twice."""
    token = _refresh_token(refresh)
    session = session_id_claim(token.get(SESSION_CLAIM))
    membership = membership_check(
        user_id=token.get("user_id"),
        tenant_id=token.get(TENANT_CLAIM),
        password_version=token.get(PASSWORD_CLAIM),
        session_id=session,
    )
    # Of two refreshes racing with one token, only the one that blacklists it first goes on
    # (the blacklist row is unique per token).
    outcome: tuple[object, bool] = token.blacklist()  # type: ignore[assignment]  # get_or_create's pair, annotated as one value
    if not outcome[1]:
        raise AuthenticationError("Token is blacklisted", code="token_not_valid")
    return _token_pair(membership=membership, session_id=session)  # the same session goes on


@transaction.atomic
def token_revoke(*, refresh: str) -> None:
    """Log out: the refresh token can no longer be used, nor any access token of its session (they
    are refused from the next request on). Revoking a revoked or expired one is fine; a revoked one
    still ends its session (a refresh may have used it just before the logout: the tokens it got
    belong to the session too). A token this server did not sign is refused (401)."""
    try:
        # Signature and expiry, not the blacklist. (simplejwt annotates a Token; it decodes a str.)
        claims = token_backend.decode(refresh, verify=True)  # type: ignore[arg-type]
    except TokenBackendExpiredToken:
        return  # as before: nothing to revoke (a client logging out holds its session's latest token)
    except TokenBackendError:
        raise AuthenticationError("Token is invalid", code="token_not_valid") from None
    if claims.get(jwt_settings.TOKEN_TYPE_CLAIM) != RefreshToken.token_type:
        raise AuthenticationError("Token has wrong type", code="token_not_valid")
    session = session_id_claim(claims.get(SESSION_CLAIM))
    if session is not None:
        _session_end(session_id=session)
    try:
        _refresh_token(refresh).blacklist()
    except AuthenticationError as exc:
        if exc.message != "Token is blacklisted":
            raise


def _session_end(*, session_id: uuid.UUID) -> None:
    now = timezone.now()
    LoggedOutSession.objects.bulk_create(
        [LoggedOutSession(session_id=session_id, logged_out_at=now)], ignore_conflicts=True
    )
    # A row is kept while a token of its session may still be valid: a refresh token issued by a
    # refresh that raced the logout (its whole lifetime), then an access token it was refreshed into.
    kept = jwt_settings.REFRESH_TOKEN_LIFETIME + jwt_settings.ACCESS_TOKEN_LIFETIME
    LoggedOutSession.objects.filter(logged_out_at__lt=now - kept).delete()


@transaction.atomic
def tenant_settings_check_role(*, actor: Membership) -> None:
    """Raises 403 `role_forbidden` unless `actor` may change the tenant's settings (checked before
    the input, so an agent learns that first)."""
    if not actor.is_admin:
        raise ForbiddenError("Changing the tenant's settings needs the owner or admin role.", code="role_forbidden")


def tenant_settings_update(
    *,
    tenant: Tenant,
    actor: Membership,
    reply_tone: str | None = None,
    signature: str | None = None,
    ai_enabled: bool | None = None,
) -> Tenant:
    """Changes the tenant's settings for AI help (None: unchanged). Owners and admins only: the
    signature and tone speak for the seller in every draft."""
    tenant_settings_check_role(actor=actor)
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    fields: list[str] = []
    if reply_tone is not None:
        if reply_tone not in ReplyTone.values:
            raise ApplicationError(
                f"replyTone: use one of {', '.join(ReplyTone.values)}.",
                code="invalid_input",
                details={"replyTone": ReplyTone.values},
            )
        locked.reply_tone = reply_tone
        fields.append("reply_tone")
    if signature is not None:
        text = signature.strip()
        if len(text) > SIGNATURE_MAX_LENGTH:
            raise ApplicationError(
                f"signature: at most {SIGNATURE_MAX_LENGTH} characters.",
                code="invalid_input",
                details={"max_length": SIGNATURE_MAX_LENGTH, "length": len(text)},
            )
        locked.signature = text
        fields.append("signature")
    if ai_enabled is not None:
        locked.ai_enabled = ai_enabled
        fields.append("ai_enabled")
    if fields:
        locked.save(update_fields=[*fields, "updated_at"])
    return locked
