"""A connection's relay mailbox settings: save (password to the secret store, then a real login and
folder select), read, remove.

The settings are saved even when the check fails, so a seller can fix a typo without typing
everything again; the check's result is kept as the mailbox's last error, which the poller then
overwrites with its own. New settings make the connection due at once (its backoff from the old
settings is forgotten); a new host, user or folder also restarts the reading from scratch (a new
cursor, with its backfill window), since UIDs mean nothing in another folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
) -> MailboxSaved:
    """Creates or replaces the settings. `password` None keeps the stored one."""
    connection = _connection_get(tenant=tenant, connection_id=connection_id)
    if connection.status == ConnectionStatus.DISCONNECTED:  # a disconnected seller leaves no credentials here
        raise ConflictError(
            "This Amazon connection is disconnected: connect it again before setting its mailbox.",
            code="connection_disconnected",
        )
    if security == MailboxSecurity.NONE and not is_loopback(host):
        raise ApplicationError(
            "security 'none' would send the mailbox password in clear over the network: use 'tls' or 'starttls' "
            "(plain connections are only accepted to a loopback host)",
            code="insecure_mailbox",
        )
    try:
        host_check(host, port, allow_private=settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS)
    except MailboxHostRefused as exc:
        raise ApplicationError(str(exc), code=exc.code) from None
    except MailboxError:
        pass  # a name that does not resolve (yet) is saved; the check below reports it
    existing = Mailbox.objects.filter(connection=connection).first()
    path = mailbox_password_path(tenant_id=tenant.id, connection_id=connection.id, protocol="imap")
    try:
        if password is not None:
            mailbox_password_store(path=path, password=password)
            secret = password
        elif existing is not None:
            secret = mailbox_password_read(existing.imap_secret_ref)
        else:
            raise ApplicationError("password: required for a new mailbox", code="invalid_input")
    except MailboxPasswordMissing:
        raise ApplicationError(
            "password: the stored password is missing, enter it again", code="invalid_input"
        ) from None
    except SecretStoreError as exc:
        raise SecretStoreUnavailableError(f"The mailbox password could not be stored or read: {exc}") from None

    mailbox = _settings_write(
        connection=connection,
        existing=existing,
        host=host,
        port=port,
        security=security,
        username=username,
        folder=folder,
        secret_ref=path,
    )
    check = _check(mailbox, secret)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        last_error=check.message, last_error_code=check.code, last_error_at=None if check.ok else timezone.now()
    )
    mailbox.refresh_from_db()
    logger.info(
        "Mailbox settings saved: tenant %s connection %s (%s), check %s",
        tenant.id,
        connection.id,
        mailbox,
        "ok" if check.ok else f"failed: {check.message}",
    )
    return MailboxSaved(mailbox=mailbox, check=check)


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
) -> Mailbox:
    moved = existing is None or (existing.imap_host, existing.imap_username, existing.imap_folder) != (
        host,
        username,
        folder,
    )
    mailbox, _ = Mailbox.objects.update_or_create(
        connection=connection,
        defaults={
            "tenant_id": connection.tenant_id,
            "imap_host": host,
            "imap_port": port,
            "imap_security": security,
            "imap_username": username,
            "imap_folder": folder,
            "imap_secret_ref": secret_ref,
        },
    )
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


def mailbox_settings_remove(*, connection: MarketplaceConnection) -> bool:
    """Deletes the password, then the settings; the connection reads from the start again if a
    mailbox is set later. False when there was none. Raises SecretStoreUnavailableError (nothing
    deleted then: the seller may retry)."""
    mailbox = Mailbox.objects.filter(connection=connection).first()
    if mailbox is None:
        return False
    try:
        mailbox_password_delete(mailbox.imap_secret_ref)
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
