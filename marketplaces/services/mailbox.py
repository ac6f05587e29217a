"""A connection's relay mailbox settings: save (passwords to the secret store, then a real IMAP login
and folder select, and an SMTP login when replies are sent from it), read, remove.

The settings are saved even when the check fails, so a seller can fix a typo without typing
everything again; the check's result is kept as the mailbox's last error, which the poller then
overwrites with its own. New settings make the connection due at once (its backoff from the old
settings is forgotten); a new host, user or folder also restarts the reading from scratch (a new
cursor, with its backfill window), since UIDs mean nothing in another folder.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from keybuzz.errors import ApplicationError, ConflictError, NotFoundError, SecretStoreUnavailableError
from keybuzz.models import Tenant
from keybuzz.secrets import SecretStoreError
from marketplaces.mailbox.errors import MailboxError, MailboxHostRefused
from marketplaces.mailbox.hosts import host_check, is_loopback
from marketplaces.mailbox.imap import ImapSettings, mailbox_check
from marketplaces.mailbox.passwords import (
    MailboxPasswordMissing,
    mailbox_password_delete,
    mailbox_password_path,
    mailbox_password_read,
    mailbox_password_store,
)
from marketplaces.mailbox.smtp import SmtpSettings, smtp_check
from marketplaces.models import ConnectionStatus, Mailbox, MailboxSecurity, MarketplaceConnection, MarketplaceType

logger = logging.getLogger("marketplaces.mailbox")

# The check runs inside the seller's request: it must answer well before the web server's timeout.
CHECK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class MailboxCheck:
    ok: bool
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class MailboxSaved:
    mailbox: Mailbox
    check: MailboxCheck
    smtp_check: MailboxCheck | None = None  # None: no SMTP settings


@dataclass(frozen=True)
class SmtpInput:
    """Where replies leave from. `password` None keeps the stored one."""

    host: str
    port: int
    security: str
    username: str
    from_address: str
    password: str | None = field(default=None, repr=False)


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP  # `smtp=KEEP`: the SMTP settings stay as they are


def _connection_get(*, tenant: Tenant, connection_id: UUID) -> MarketplaceConnection:
    connection = MarketplaceConnection.objects.filter(
        tenant=tenant, type=MarketplaceType.AMAZON, id=connection_id
    ).first()
    if connection is None:  # another tenant's id answers like one that does not exist
        raise NotFoundError("No such Amazon connection in this tenant.", code="connection_not_found")
    return connection


def mailbox_get(*, tenant: Tenant, connection_id: UUID) -> Mailbox:
    mailbox = Mailbox.objects.filter(tenant=tenant, connection_id=connection_id).first()
    if mailbox is None:
        _connection_get(tenant=tenant, connection_id=connection_id)
        raise NotFoundError("This connection has no mailbox settings.", code="mailbox_not_configured")
    return mailbox


def last_check(mailbox: Mailbox) -> MailboxCheck:
    """The latest known state of the mailbox: the last poll's, or the check made when it was saved."""
    if mailbox.last_error:
        return MailboxCheck(ok=False, code=mailbox.last_error_code or "mailbox_error", message=mailbox.last_error)
    return MailboxCheck(ok=True)


def last_smtp_check(mailbox: Mailbox) -> MailboxCheck | None:
    """The latest known state of the SMTP login (the last send's, or the check made when saved)."""
    if not mailbox.has_smtp:
        return None
    if mailbox.smtp_last_error:
        return MailboxCheck(
            ok=False, code=mailbox.smtp_last_error_code or "smtp_error", message=mailbox.smtp_last_error
        )
    return MailboxCheck(ok=True)


def _refuse_unsafe_host(host: str, port: int, security: str, *, what: str) -> None:
    if security == MailboxSecurity.NONE and not is_loopback(host):
        raise ApplicationError(
            f"{what}: security 'none' would send the password in clear over the network: use 'tls' or 'starttls' "
            "(plain connections are only accepted to a loopback host)",
            code="insecure_mailbox",
        )
    try:
        host_check(host, port, allow_private=settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS)
    except MailboxHostRefused as exc:
        raise ApplicationError(f"{what}: {exc}", code=exc.code) from None
    except MailboxError:
        pass  # a name that does not resolve (yet) is saved; the check reports it


def _password_keep_or_store(*, path: str, password: str | None, stored_ref: str, what: str) -> str:
    """Stores a new password, or reads the stored one back (for the check). Raises ApplicationError."""
    try:
        if password is not None:
            mailbox_password_store(path=path, password=password)
            return password
        if stored_ref:
            return mailbox_password_read(stored_ref)
        raise ApplicationError(f"{what}.password: required for new settings", code="invalid_input")
    except MailboxPasswordMissing:
        raise ApplicationError(
            f"{what}.password: the stored password is missing, enter it again", code="invalid_input"
        ) from None
    except SecretStoreError as exc:
        raise SecretStoreUnavailableError(f"The {what} password could not be stored or read: {exc}") from None


def mailbox_settings_save(
    *,
    tenant: Tenant,
    connection_id: UUID,
    host: str,
    port: int,
    security: str,
    username: str,
    password: str | None,
    folder: str,
    smtp: SmtpInput | Keep | None = KEEP,
) -> MailboxSaved:
    """Creates or replaces the settings. `password` None keeps the stored one; `smtp` None removes
    the SMTP settings, KEEP leaves them as they are."""
    connection = _connection_get(tenant=tenant, connection_id=connection_id)
    if connection.status == ConnectionStatus.DISCONNECTED:  # a disconnected seller leaves no credentials here
        raise ConflictError(
            "This Amazon connection is disconnected: connect it again before setting its mailbox.",
            code="connection_disconnected",
        )
    _refuse_unsafe_host(host, port, security, what="imap")
    if isinstance(smtp, SmtpInput):
        _refuse_unsafe_host(smtp.host, smtp.port, smtp.security, what="smtp")
    existing = Mailbox.objects.filter(connection=connection).first()
    path = mailbox_password_path(tenant_id=tenant.id, connection_id=connection.id, protocol="imap")
    secret = _password_keep_or_store(
        path=path, password=password, stored_ref=existing.imap_secret_ref if existing else "", what="imap"
    )
    smtp_path = mailbox_password_path(tenant_id=tenant.id, connection_id=connection.id, protocol="smtp")
    smtp_secret = ""
    if isinstance(smtp, SmtpInput):
        smtp_secret = _password_keep_or_store(
            path=smtp_path,
            password=smtp.password,
            stored_ref=existing.smtp_secret_ref if existing else "",
            what="smtp",
        )
    elif smtp is None and existing is not None and existing.smtp_secret_ref:
        _smtp_password_delete(existing.smtp_secret_ref)

    mailbox = _settings_write(
        connection=connection,
        existing=existing,
        host=host,
        port=port,
        security=security,
        username=username,
        folder=folder,
        secret_ref=path,
        smtp=smtp,
        smtp_secret_ref=smtp_path,
    )
    check = _check(mailbox, secret)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        last_error=check.message, last_error_code=check.code, last_error_at=None if check.ok else timezone.now()
    )
    smtp_result = _smtp_check(mailbox, smtp_secret) if isinstance(smtp, SmtpInput) else None
    if smtp_result is not None:
        Mailbox.objects.filter(pk=mailbox.pk).update(
            smtp_last_error=smtp_result.message,
            smtp_last_error_code=smtp_result.code,
            smtp_last_error_at=None if smtp_result.ok else timezone.now(),
        )
    mailbox.refresh_from_db()
    logger.info(
        "Mailbox settings saved: tenant %s connection %s (%s), IMAP check %s, SMTP %s",
        tenant.id,
        connection.id,
        mailbox,
        "ok" if check.ok else f"failed: {check.message}",
        "not set"
        if not mailbox.has_smtp
        else (
            "unchanged"
            if smtp_result is None
            else "check ok"
            if smtp_result.ok
            else f"check failed: {smtp_result.message}"
        ),
    )
    return MailboxSaved(mailbox=mailbox, check=check, smtp_check=smtp_result or last_smtp_check(mailbox))


def _smtp_password_delete(ref: str) -> None:
    try:
        mailbox_password_delete(ref)
    except SecretStoreError as exc:
        raise SecretStoreUnavailableError(f"The smtp password could not be deleted yet ({exc}); retry.") from None


@transaction.atomic
def _settings_write(
    *,
    connection: MarketplaceConnection,
    existing: Mailbox | None,
    host: str,
    port: int,
    security: str,
    username: str,
    folder: str,
    secret_ref: str,
    smtp: SmtpInput | Keep | None,
    smtp_secret_ref: str,
) -> Mailbox:
    moved = existing is None or (existing.imap_host, existing.imap_username, existing.imap_folder) != (
        host,
        username,
        folder,
    )
    values: dict[str, object] = {
        "tenant_id": connection.tenant_id,
        "imap_host": host,
        "imap_port": port,
        "imap_security": security,
        "imap_username": username,
        "imap_folder": folder,
        "imap_secret_ref": secret_ref,
    }
    if isinstance(smtp, SmtpInput):
        values.update(
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_security=smtp.security,
            smtp_username=smtp.username,
            smtp_from_address=smtp.from_address,
            smtp_secret_ref=smtp_secret_ref,
        )
    elif smtp is None:
        values.update(
            smtp_host="",
            smtp_port=None,
            smtp_security="",
            smtp_username="",
            smtp_from_address="",
            smtp_secret_ref="",
            smtp_last_error="",
            smtp_last_error_code="",
            smtp_last_error_at=None,
        )
    mailbox, _ = Mailbox.objects.update_or_create(connection=connection, defaults=values)
    # Due at once with the new settings; another mailbox starts over (new cursor and backfill).
    reset: dict[str, object] = {"next_poll_at": None, "consecutive_failures": 0, "updated_at": timezone.now()}
    if moved:
        reset["poll_cursor"] = ""
    MarketplaceConnection.objects.filter(pk=connection.pk).update(**reset)
    return mailbox


def _check(mailbox: Mailbox, password: str) -> MailboxCheck:
    try:
        mailbox_check(
            ImapSettings(
                host=mailbox.imap_host,
                port=mailbox.imap_port,
                security=mailbox.imap_security,
                username=mailbox.imap_username,
                password=password,
                folder=mailbox.imap_folder,
                timeout=min(settings.AMAZON_MAILBOX_TIMEOUT, CHECK_TIMEOUT_SECONDS),
                ca_file=settings.AMAZON_MAILBOX_CA_FILE,
                allow_private=settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS,
            )
        )
    except MailboxError as exc:
        return MailboxCheck(ok=False, code=exc.code, message=str(exc))
    return MailboxCheck(ok=True)


def mailbox_smtp_settings(mailbox: Mailbox, password: str, *, timeout: float | None = None) -> SmtpSettings:
    return SmtpSettings(
        host=mailbox.smtp_host,
        port=mailbox.smtp_port or 0,
        security=mailbox.smtp_security,
        username=mailbox.smtp_username,
        password=password,
        timeout=timeout or settings.AMAZON_MAILBOX_TIMEOUT,
        ca_file=settings.AMAZON_MAILBOX_CA_FILE,
        allow_private=settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS,
    )


def _smtp_check(mailbox: Mailbox, password: str) -> MailboxCheck:
    try:
        smtp_check(
            mailbox_smtp_settings(
                mailbox, password, timeout=min(settings.AMAZON_MAILBOX_TIMEOUT, CHECK_TIMEOUT_SECONDS)
            )
        )
    except MailboxError as exc:
        return MailboxCheck(ok=False, code=exc.code, message=str(exc))
    return MailboxCheck(ok=True)


def mailbox_settings_remove(*, connection: MarketplaceConnection) -> bool:
    """Deletes the password, then the settings; the connection reads from the start again if a
    mailbox is set later. False when there was none. Raises SecretStoreUnavailableError (nothing
    deleted then: the seller may retry)."""
    mailbox = Mailbox.objects.filter(connection=connection).first()
    if mailbox is None:
        return False
    try:
        for ref in (mailbox.imap_secret_ref, mailbox.smtp_secret_ref):
            if ref:
                mailbox_password_delete(ref)
    except SecretStoreError as exc:
        raise SecretStoreUnavailableError(f"The mailbox password could not be deleted yet ({exc}); retry.") from None
    with transaction.atomic():
        mailbox.delete()
        MarketplaceConnection.objects.filter(pk=connection.pk).update(poll_cursor="", updated_at=timezone.now())
    logger.info("Mailbox settings removed: tenant %s connection %s", connection.tenant_id, connection.id)
    return True


def mailbox_settings_delete(*, tenant: Tenant, connection_id: UUID) -> None:
    connection = _connection_get(tenant=tenant, connection_id=connection_id)
    if not mailbox_settings_remove(connection=connection):
        raise NotFoundError("This connection has no mailbox settings.", code="mailbox_not_configured")
