"""The Amazon poller: claim due connections, fetch their new messages, file them as tickets.

Several workers on several hosts may run at once (cron every 5 minutes): connections are leased
with `SELECT … FOR UPDATE SKIP LOCKED` and a lease expiry, so workers share the work and a killed
worker's connections come back after the lease. No transaction stays open during a network call:
the claim commits first, the fetch runs outside any transaction, and the messages, their tickets
and the new cursor commit together in one transaction. The unique constraints on
(connection, external_id) and (connection, thread_key) make a repeated fetch harmless.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from keybuzz.db import insert_rows
from keybuzz.logging import log_context
from keybuzz.secrets import SecretStoreError
from marketplaces.amazon.app import AppCredentialsMissing, load_app_credentials
from marketplaces.amazon.tokens import AccessTokenProvider, NeedsReauth, TokenRefreshFailed
from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection, QuarantinedMessage
from marketplaces.ops.services import poll_run_record
from marketplaces.selectors import pollable_connections
from marketplaces.sources import (
    FetchResult,
    MessageParseError,
    MessageSource,
    ParsedMessage,
    SourceConfigurationError,
    SourceError,
    get_message_source,
)
from marketplaces.sources.base import ConnectionSnapshot
from tickets.ingest import InboundMessage, inbound_messages_file

logger = logging.getLogger("marketplaces.poller")

LOG = "[Amazon Poller]"
MAX_ERROR_LENGTH = 1000
# Older or future-dated messages are garbage from the source, not buyers' messages.
EARLIEST_SENT_AT = datetime(2000, 1, 1, tzinfo=UTC)


class PollerConfigurationError(Exception):
    """Nothing can be polled until the operator fixes the configuration (exit code 2)."""


@dataclass
class PollSummary:
    connections: int = 0
    fetched: int = 0
    new_messages: int = 0
    new_tickets: int = 0
    quarantined: int = 0
    failures: int = 0
    seconds: float = 0.0
    failed_connections: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{LOG} Summary: connections={self.connections} fetched={self.fetched} "
            f"new_messages={self.new_messages} new_tickets={self.new_tickets} "
            f"quarantined={self.quarantined} failures={self.failures} seconds={self.seconds:.2f}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClaimedConnection:
    snapshot: ConnectionSnapshot
    secret_ref: str


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_delay(failures: int) -> timedelta:
    """Exponential: base, 2 * base, 4 * base, … capped, after the n-th consecutive failure."""
    seconds = settings.AMAZON_POLL_BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0)
    return timedelta(seconds=min(seconds, settings.AMAZON_POLL_BACKOFF_MAX_SECONDS))


# --- Claiming ---------------------------------------------------------------------------------


def connections_claim(
    *,
    worker: str,
    limit: int,
    tenant_id: str | None = None,
    connection_id: str | None = None,
    force: bool = False,
    untouched_since: datetime | None = None,
) -> list[ClaimedConnection]:
    """Lease up to `limit` due connections to `worker` and return them.

    `untouched_since` (a run's start) skips the connections written since: every poll, failed or
    not, writes `updated_at`, so a run never takes a connection twice, even with `force` or a
    polling interval shorter than the run, and without keeping the ids it has polled (their list
    would grow with the run, in memory and in every claim's query)."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.AMAZON_POLL_LEASE_SECONDS)
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    queryset = pollable_connections().filter(free)
    if not force:
        queryset = queryset.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
    if tenant_id:
        queryset = queryset.filter(tenant_id=tenant_id)
    if connection_id:
        queryset = queryset.filter(id=connection_id)
    if untouched_since:
        queryset = queryset.filter(updated_at__lt=untouched_since)

    with transaction.atomic():
        ids = list(
            queryset.select_for_update(skip_locked=True)
            .order_by(F("next_poll_at").asc(nulls_first=True), "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        # Conditional on the lease still being free: on SQLite, which has no row locks, two
        # workers may select the same rows, and only the first UPDATE takes them.
        MarketplaceConnection.objects.filter(free, id__in=ids).update(lease_owner=worker, lease_expires_at=lease_until)
        rows = MarketplaceConnection.objects.filter(id__in=ids, lease_owner=worker, lease_expires_at=lease_until)
        return [
            ClaimedConnection(
                snapshot=ConnectionSnapshot(
                    id=str(c.id),
                    tenant_id=str(c.tenant_id),
                    selling_partner_id=c.selling_partner_id,
                    region=c.region,
                    marketplace_ids=tuple(c.marketplace_ids or ()),
                    cursor=c.poll_cursor,
                ),
                secret_ref=c.secret_ref,
            )
            for c in rows.order_by(F("next_poll_at").asc(nulls_first=True), "id")
        ]


def leases_release(*, worker: str, connection_ids: list[str]) -> None:
    """Gives back connections claimed but not polled (the worker is stopping)."""
    MarketplaceConnection.objects.filter(id__in=connection_ids, lease_owner=worker).update(
        lease_owner="", lease_expires_at=None
    )


# --- One connection ---------------------------------------------------------------------------


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters; a buyer's message must not fail the batch for it.
    return text.replace("\x00", "")


def _validated(parsed: ParsedMessage) -> ParsedMessage:
    if not parsed.external_id or len(parsed.external_id) > 255:
        raise MessageParseError("external id is empty or longer than 255 characters")
    if not parsed.thread_key or len(parsed.thread_key) > 255:
        raise MessageParseError("thread key is empty or longer than 255 characters")
    if timezone.is_naive(parsed.sent_at):
        raise MessageParseError("sent time has no time zone")
    if not EARLIEST_SENT_AT <= parsed.sent_at <= timezone.now() + timedelta(days=1):
        raise MessageParseError(f"sent time out of range: {parsed.sent_at.isoformat()}")
    return parsed


def _parse_all(
    source: MessageSource, raws: list[dict[str, Any]]
) -> tuple[list[tuple[dict, ParsedMessage]], list[tuple[dict, str]]]:
    good: list[tuple[dict, ParsedMessage]] = []
    bad: list[tuple[dict, str]] = []
    seen: set[str] = set()
    for raw in raws:
        try:
            parsed = _validated(source.parse(raw))
        except MessageParseError as exc:
            bad.append((raw, str(exc)))
            continue
        except Exception as exc:  # a parser bug on one message must not block the mailbox
            bad.append((raw, f"parser failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]))
            continue
        if parsed.external_id not in seen:  # a page repeated by the source
            seen.add(parsed.external_id)
            good.append((raw, parsed))
    return good, bad


@dataclass(frozen=True)
class IngestResult:
    new_messages: int = 0
    new_tickets: int = 0
    quarantined: int = 0

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            self.new_messages + other.new_messages,
            self.new_tickets + other.new_tickets,
            self.quarantined + other.quarantined,
        )


def _clean_json(value: Any, *, for_quarantine: bool = False) -> Any:
    """Drops NUL characters; for the quarantine, also the non-finite numbers JSON cannot hold
    (a payload carrying them is refused and quarantined, and its copy there must still store)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_json(v, for_quarantine=for_quarantine) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v, for_quarantine=for_quarantine) for v in value]
    if for_quarantine and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _file(snap: ConnectionSnapshot, good: list[tuple[dict, ParsedMessage]]) -> IngestResult:
    """Inserts the new messages (the unique constraint drops known ones) and files them as tickets."""
    rows = [
        {
            "external_id": p.external_id,
            "thread_key": p.thread_key,
            "order_id": _clean(p.order_id)[:64],
            "sender": _clean(p.sender)[:255],
            "subject": _clean(p.subject)[:500],
            "body": _clean(p.body),
            "sent_at": p.sent_at,
            "raw": _clean_json(raw),
        }
        for raw, p in good
    ]
    inserted = dict(
        insert_rows(
            ExternalMessage,
            rows,
            shared={"tenant_id": snap.tenant_id, "connection_id": snap.id},
            conflict_fields=["connection", "external_id"],
            returning=["external_id", "id"],
        )
    )
    tickets_created = inbound_messages_file(
        tenant_id=snap.tenant_id,
        connection_id=snap.id,
        channel="AMAZON",
        messages=[
            InboundMessage(
                external_message_id=inserted[p.external_id],
                thread_key=p.thread_key,
                sent_at=p.sent_at,
                body=_clean(p.body),
                subject=_clean(p.subject),
                order_id=_clean(p.order_id),
                customer_name=_clean(p.sender_name),
                customer_ref=_clean(p.sender),
            )
            for _, p in good
            if p.external_id in inserted
        ],
    )
    return IngestResult(new_messages=len(inserted), new_tickets=tickets_created)


def messages_ingest(*, claimed: ClaimedConnection, fetch: FetchResult, source: MessageSource) -> IngestResult:
    """Messages, tickets, quarantine and the cursor, in one transaction."""
    good, bad = _parse_all(source, fetch.raw_messages)
    try:
        with transaction.atomic():
            return _commit(claimed, fetch, good, bad, one_by_one=False)
    except Exception:
        # Something in the batch was refused (by the database, or a value it cannot store): file
        # the messages one by one so only the culprit is quarantined and the mailbox moves on.
        logger.warning(
            "%s Batch refused for tenant %s (connection %s); filing its messages one by one",
            LOG,
            claimed.snapshot.tenant_id,
            claimed.snapshot.id,
        )
    with transaction.atomic():
        return _commit(claimed, fetch, good, bad, one_by_one=True)


def _commit(
    claimed: ClaimedConnection,
    fetch: FetchResult,
    good: list[tuple[dict, ParsedMessage]],
    bad: list[tuple[dict, str]],
    *,
    one_by_one: bool,
) -> IngestResult:
    snap = claimed.snapshot
    now = timezone.now()
    bad = list(bad)
    if not one_by_one:
        result = _file(snap, good)
    else:
        result = IngestResult()
        for item in good:
            try:
                with transaction.atomic():  # a savepoint per message, on this slow path only
                    result += _file(snap, [item])
            except Exception as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                bad.append((item[0], f"cannot be stored: {type(exc).__name__}: {reason}"))

    quarantined = insert_rows(
        QuarantinedMessage,
        [
            {
                "external_id": _clean(str(raw.get("messageId") or raw.get("id") or ""))[:255] or None,
                "reason": reason[:MAX_ERROR_LENGTH],
                "raw": _clean_json(raw, for_quarantine=True),
            }
            for raw, reason in bad
        ],
        shared={"tenant_id": snap.tenant_id, "connection_id": snap.id},
        conflict_fields=["connection", "external_id"],
        returning=["id"],
    )
    MarketplaceConnection.objects.filter(id=snap.id).update(
        poll_cursor=fetch.next_cursor,
        last_polled_at=now,
        next_poll_at=now + timedelta(seconds=settings.AMAZON_POLL_INTERVAL_SECONDS),
        lease_owner="",
        lease_expires_at=None,
        last_error="",
        last_error_at=None,
        consecutive_failures=0,
        updated_at=now,
    )
    return result + IngestResult(quarantined=len(quarantined))


def failure_record(*, connection_id: str, error: str, needs_reauth: bool = False) -> None:
    """Keeps the reason on the connection and schedules the retry with exponential backoff."""
    now = timezone.now()
    with transaction.atomic():
        row = MarketplaceConnection.objects.select_for_update().filter(id=connection_id).first()
        if row is None:
            return
        failures = row.consecutive_failures + 1
        updates: dict[str, Any] = dict(
            last_error=error[:MAX_ERROR_LENGTH],
            last_error_at=now,
            consecutive_failures=failures,
            next_poll_at=now + backoff_delay(failures),
            lease_owner="",
            lease_expires_at=None,
            updated_at=now,
        )
        # Only a connection still CONNECTED is moved: a tenant's disconnect in the meantime wins.
        if needs_reauth and row.status == ConnectionStatus.CONNECTED:
            updates["status"] = ConnectionStatus.NEEDS_REAUTH
        MarketplaceConnection.objects.filter(id=connection_id).update(**updates)


@dataclass(frozen=True)
class ConnectionOutcome:
    fetched: int = 0
    new_messages: int = 0
    new_tickets: int = 0
    quarantined: int = 0
    error: str = ""


def connection_poll(
    *, claimed: ClaimedConnection, source: MessageSource, tokens: AccessTokenProvider
) -> ConnectionOutcome:
    # Every line logged while polling this connection carries its tenant and connection ids.
    with log_context(tenant_id=claimed.snapshot.tenant_id, connection_id=claimed.snapshot.id):
        return _connection_poll(claimed=claimed, source=source, tokens=tokens)


def _connection_poll(
    *, claimed: ClaimedConnection, source: MessageSource, tokens: AccessTokenProvider
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
        failure_record(connection_id=snap.id, error=str(exc), needs_reauth=True)
        return ConnectionOutcome(error=str(exc))
    except TokenRefreshFailed as exc:
        logger.error("%s Poll error for tenant %s (connection %s): %s; will retry", LOG, tenant, snap.id, exc)
        failure_record(connection_id=snap.id, error=str(exc))
        return ConnectionOutcome(error=str(exc))
    except (SourceError, SecretStoreError) as exc:
        error = f"Fetch failed: {exc}"
        logger.error("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        failure_record(connection_id=snap.id, error=error)
        return ConnectionOutcome(error=error)
    except Exception as exc:  # a bug in one source call must not stop the run for other tenants
        error = f"Fetch failed: {type(exc).__name__}"
        logger.exception("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        failure_record(connection_id=snap.id, error=error)
        return ConnectionOutcome(error=error)

    logger.info("%s Fetched %d messages for tenant %s (connection %s)", LOG, len(fetched.raw_messages), tenant, snap.id)
    try:
        result = messages_ingest(claimed=claimed, fetch=fetched, source=source)
    except Exception as exc:
        error = f"Ingestion failed: {type(exc).__name__}"
        logger.exception("%s Poll error for tenant %s (connection %s): %s", LOG, tenant, snap.id, error)
        failure_record(connection_id=snap.id, error=error)
        return ConnectionOutcome(fetched=len(fetched.raw_messages), error=error)
    if result.quarantined:
        logger.warning(
            "%s Quarantined %d unreadable messages for tenant %s (connection %s)",
            LOG,
            result.quarantined,
            tenant,
            snap.id,
        )
    logger.info(
        "%s Poll completed for tenant: %s (connection %s, %d new messages, %d new tickets)",
        LOG,
        tenant,
        snap.id,
        result.new_messages,
        result.new_tickets,
    )
    return ConnectionOutcome(
        fetched=len(fetched.raw_messages),
        new_messages=result.new_messages,
        new_tickets=result.new_tickets,
        quarantined=result.quarantined,
    )


# --- A run ------------------------------------------------------------------------------------


class _Run:
    """What the worker threads of one run share: the summary and the limit."""

    def __init__(self, limit: int | None) -> None:
        self.summary = PollSummary()
        self.limit = limit
        self.claimed = 0
        self.started_at = timezone.now()  # also the metrics' PollRun start
        self.lock = threading.Lock()

    def reserve(self, wanted: int) -> int:
        with self.lock:
            granted = wanted if self.limit is None else max(min(wanted, self.limit - self.claimed), 0)
            self.claimed += granted
            return granted

    def give_back(self, count: int) -> None:
        with self.lock:
            self.claimed -= count

    def record(self, connection_id: str, outcome: ConnectionOutcome) -> None:
        with self.lock:
            s = self.summary
            s.connections += 1
            s.fetched += outcome.fetched
            s.new_messages += outcome.new_messages
            s.new_tickets += outcome.new_tickets
            s.quarantined += outcome.quarantined
            if outcome.error:
                s.failures += 1
                s.failed_connections.append(connection_id)


def _worker_loop(
    run: _Run,
    *,
    worker: str,
    source: MessageSource,
    tokens: AccessTokenProvider,
    should_stop: Callable[[], bool],
    tenant_id: str | None,
    connection_id: str | None,
    force: bool,
) -> None:
    if connection.vendor == "postgresql":
        # The cursor advances in the same transaction as the messages, so a commit lost in a
        # database crash is only fetched again on the next run; not waiting for the WAL flush at
        # every connection's commit is safe here and saves a disk sync per connection.
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
    while not should_stop():
        wanted = run.reserve(settings.AMAZON_POLL_CLAIM_BATCH)
        if not wanted:
            return
        claimed = connections_claim(
            worker=worker,
            limit=wanted,
            tenant_id=tenant_id,
            connection_id=connection_id,
            force=force,
            untouched_since=run.started_at,
        )
        run.give_back(wanted - len(claimed))
        if not claimed:
            return
        for index, item in enumerate(claimed):
            if should_stop():
                rest = [c.snapshot.id for c in claimed[index:]]
                leases_release(worker=worker, connection_ids=rest)
                run.give_back(len(rest))
                return
            run.record(item.snapshot.id, connection_poll(claimed=item, source=source, tokens=tokens))


def poll_run(
    *,
    limit: int | None = None,
    tenant_id: str | None = None,
    connection_id: str | None = None,
    force: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    tokens: AccessTokenProvider | None = None,
    worker: str | None = None,
    workers: int | None = None,
) -> PollSummary:
    """Polls every due connection once (or `limit` of them), `workers` at a time.

    Threads, because a real source spends its time waiting on Amazon: several connections are
    polled at once, each thread with its own database connection. SQLite, which serializes
    writers, always gets one. Raises PollerConfigurationError.
    """
    started = time.monotonic()
    run = _Run(limit)
    worker = worker or worker_name()
    try:
        source = get_message_source()
        # Checked once up front (a missing app is the operator's to fix), then reused for every token.
        app = load_app_credentials() if source.needs_access_token else None
    except (SourceConfigurationError, AppCredentialsMissing) as exc:
        raise PollerConfigurationError(str(getattr(exc, "message", exc))) from None
    tokens = tokens or AccessTokenProvider(app=app)
    workers = 1 if connection.vendor == "sqlite" else max(workers or settings.AMAZON_POLL_WORKERS, 1)

    options = dict(
        run=run,
        source=source,
        tokens=tokens,
        should_stop=should_stop,
        tenant_id=tenant_id,
        connection_id=connection_id,
        force=force,
    )
    if workers == 1:
        _worker_loop(worker=worker, **options)
    else:
        errors: list[BaseException] = []

        def thread_main(name: str) -> None:
            try:
                _worker_loop(worker=name, **options)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)
            finally:
                connection.close()  # each thread has its own database connection

        threads = [
            threading.Thread(target=thread_main, args=(f"{worker}/{n}",), name=f"poller-{n}") for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    run.summary.seconds = time.monotonic() - started
    # Metrics: the run's figures go to the database, where GET /metrics and the dashboard read them.
    summary = run.summary
    poll_run_record(
        worker=worker,
        started_at=run.started_at,
        connections=summary.connections,
        fetched=summary.fetched,
        new_messages=summary.new_messages,
        new_tickets=summary.new_tickets,
        quarantined=summary.quarantined,
        failures=summary.failures,
        seconds=summary.seconds,
    )
    return run.summary
