"""Polling one connection: an access token, the fetch (no database transaction open while the
source waits on the network), the filing; a failure is recorded on the connection with an
exponential backoff and never stops the run for the other tenants.

The token and the fetch run in the calling thread; the database steps (the filing, or the failure)
through `database` (`marketplaces.polling.database`): a run's many polling threads share a few
database connections."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from keybuzz.logging import log_context
from keybuzz.secrets import SecretStoreError
from keybuzz.workers.backoff import backoff_delay
from marketplaces.amazon.tokens import AccessTokenProvider, NeedsReauth, TokenRefreshFailed
from marketplaces.models import ConnectionStatus, Mailbox, MarketplaceConnection
from marketplaces.polling.claim import ClaimedConnection
from marketplaces.polling.database import Database, Inline
from marketplaces.polling.filing import LOST_DATABASE, messages_ingest
from marketplaces.polling.log import LOG, logger
from marketplaces.polling.parse import MAX_ERROR_LENGTH
from marketplaces.sources import MessageSource, SourceError


def failure_record(
    *,
    connection_id: str,
    error: str,
    needs_reauth: bool = False,
    needs_attention: bool = False,
    mailbox_error_code: str = "",
) -> None:
    """Keeps the reason on the connection and schedules the retry with exponential backoff.

    `needs_attention` (a refused mailbox login: retrying every run would not help, and servers
    lock out accounts that keep failing) waits the longest backoff at once; new settings clear it.
    `mailbox_error_code`: the failure was reading the relay mailbox (shown as the mailbox's last error)."""
    now = timezone.now()
    with transaction.atomic():
        row = MarketplaceConnection.objects.select_for_update().filter(id=connection_id).first()
        if row is None:
            return
        failures = row.consecutive_failures + 1
        delay = backoff_delay(
            failures,
            base_seconds=settings.AMAZON_POLL_BACKOFF_BASE_SECONDS,
            max_seconds=settings.AMAZON_POLL_BACKOFF_MAX_SECONDS,
        )
        if needs_attention:
            delay = max(delay, timedelta(seconds=settings.AMAZON_POLL_BACKOFF_MAX_SECONDS))
        updates: dict[str, Any] = dict(
            last_error=error[:MAX_ERROR_LENGTH],
            last_error_at=now,
            consecutive_failures=failures,
            next_poll_at=now + delay,
            lease_owner="",
            lease_expires_at=None,
            updated_at=now,
        )
        # Only a connection still CONNECTED is moved: a tenant's disconnect in the meantime wins.
        if needs_reauth and row.status == ConnectionStatus.CONNECTED:
            updates["status"] = ConnectionStatus.NEEDS_REAUTH
        MarketplaceConnection.objects.filter(id=connection_id).update(**updates)
        if mailbox_error_code:
            Mailbox.objects.filter(connection_id=UUID(connection_id)).update(
                last_error=error[:MAX_ERROR_LENGTH], last_error_code=mailbox_error_code, last_error_at=now
            )


@dataclass(frozen=True)
class ConnectionOutcome:
    fetched: int = 0
    new_messages: int = 0
    new_tickets: int = 0
    quarantined: int = 0
    recorded: int = 0
    ignored: int = 0
    skipped_old: int = 0
    error: str = ""


def connection_poll(
    *,
    claimed: ClaimedConnection,
    source: MessageSource,
    tokens: AccessTokenProvider,
    database: Database | None = None,
) -> ConnectionOutcome:
    # Every line logged while polling this connection carries its tenant and connection ids.
    with log_context(tenant_id=claimed.snapshot.tenant_id, connection_id=claimed.snapshot.id):
        return _connection_poll(claimed=claimed, source=source, tokens=tokens, database=database or Inline())


def _failed(
    database: Database,
    snap_id: str,
    error: str,
    *,
    needs_reauth: bool = False,
    needs_attention: bool = False,
    mailbox_error_code: str = "",
    fetched: int = 0,
) -> ConnectionOutcome:
    database.call(
        failure_record,
        connection_id=snap_id,
        error=error,
        needs_reauth=needs_reauth,
        needs_attention=needs_attention,
        mailbox_error_code=mailbox_error_code,
    )
    return ConnectionOutcome(fetched=fetched, error=error)


def _connection_poll(
    *, claimed: ClaimedConnection, source: MessageSource, tokens: AccessTokenProvider, database: Database
) -> ConnectionOutcome:
    snap = claimed.snapshot
    tenant = snap.tenant_id
    logger.info(
        "%s Starting poll for tenant: %s (connection %s, seller %s)", LOG, tenant, snap.id, snap.selling_partner_id
    )
    try:
        access_token = (
            tokens.access_token(connection_id=snap.id, secret_ref=claimed.secret_ref)
            if source.needs_access_token
            else None
        )
        fetched = source.fetch(snap, access_token=access_token)
    except NeedsReauth as exc:
        # "Poll error" (the runbook's `amazon poller.*error`) and "Token refresh failed" (in exc) both match.
        logger.error("%s Poll error for tenant %s (connection %s): %s; NEEDS_REAUTH", LOG, tenant, snap.id, exc)
        return _failed(database, snap.id, str(exc), needs_reauth=True)
    except TokenRefreshFailed as exc:
        logger.error("%s Poll error for tenant %s (connection %s): %s; will retry", LOG, tenant, snap.id, exc)
        return _failed(database, snap.id, str(exc))
    except SourceError as exc:
        error = f"Fetch failed: {exc}"
        logger.error("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        return _failed(
            database,
            snap.id,
            error,
            needs_attention=exc.needs_attention,
            mailbox_error_code=exc.code if snap.mailbox is not None else "",
        )
    except SecretStoreError as exc:
        error = f"Fetch failed: {exc}"
        logger.error("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        return _failed(database, snap.id, error)
    except Exception as exc:  # a bug in one source call must not stop the run for other tenants
        error = f"Fetch failed: {type(exc).__name__}"
        logger.exception("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        return _failed(database, snap.id, error)

    logger.info("%s Fetched %d messages for tenant %s (connection %s)", LOG, len(fetched.raw_messages), tenant, snap.id)
    try:
        result = database.call(messages_ingest, claimed=claimed, fetch=fetched, source=source)
    except LOST_DATABASE:
        raise  # the whole run stops (poll_amazon: "Run error: database unavailable"); its lease expires
    except Exception as exc:
        error = f"Ingestion failed: {type(exc).__name__}"
        logger.exception("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        return _failed(database, snap.id, error, fetched=len(fetched.raw_messages))
    if fetched.skipped_old:
        logger.info(
            "%s Left %d mails older than the backfill window unfiled for tenant %s (connection %s)",
            LOG,
            fetched.skipped_old,
            tenant,
            snap.id,
        )
    if result.quarantined:
        logger.warning(
            "%s Quarantined %d unreadable messages for tenant %s (connection %s)",
            LOG,
            result.quarantined,
            tenant,
            snap.id,
        )
    logger.info(
        "%s Poll completed for tenant: %s (connection %s, %d new messages, %d new tickets, %d notices recorded, "
        "%d ignored)",
        LOG,
        tenant,
        snap.id,
        result.new_messages,
        result.new_tickets,
        result.recorded,
        result.ignored,
    )
    return ConnectionOutcome(
        fetched=len(fetched.raw_messages),
        new_messages=result.new_messages,
        new_tickets=result.new_tickets,
        quarantined=result.quarantined,
        recorded=result.recorded,
        ignored=result.ignored,
        skipped_old=fetched.skipped_old,
    )
