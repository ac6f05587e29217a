"""One run of the poller: every due connection once (or `limit` of them), `AMAZON_POLL_WORKERS`
at a time, then the run's figures for the operators."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from keybuzz.workers import worker_name
from keybuzz.workers.runner import RunUnavailable, StopCheck
from marketplaces.amazon.app import AppCredentialsMissing, AppCredentialsUnavailable, load_app_credentials
from marketplaces.amazon.tokens import AccessTokenProvider
from marketplaces.polling.claim import connections_claim, leases_release
from marketplaces.polling.connection import ConnectionOutcome, connection_poll
from marketplaces.polling.log import LOG
from marketplaces.polling.records import poll_run_record
from marketplaces.sources import MessageSource, SourceConfigurationError, default_source
from marketplaces.sources.imap import ImapSource

__all__ = ["LOG", "PollSummary", "PollerConfigurationError", "PollerUnavailable", "poll_run"]


class PollerConfigurationError(Exception):
    """Nothing can be polled until the operator fixes the configuration (exit code 2)."""


class PollerUnavailable(RunUnavailable):
    """The run could not start: the secret store holding the app's credentials did not answer."""


@dataclass
class PollSummary:
    connections: int = 0
    fetched: int = 0
    new_messages: int = 0
    new_tickets: int = 0
    quarantined: int = 0
    recorded: int = 0
    ignored: int = 0
    skipped_old: int = 0
    failures: int = 0
    seconds: float = 0.0
    failed_connections: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{LOG} Summary: connections={self.connections} fetched={self.fetched} "
            f"new_messages={self.new_messages} new_tickets={self.new_tickets} "
            f"quarantined={self.quarantined} recorded={self.recorded} ignored={self.ignored} "
            f"skipped_old={self.skipped_old} failures={self.failures} seconds={self.seconds:.2f}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
            s.recorded += outcome.recorded
            s.ignored += outcome.ignored
            s.skipped_old += outcome.skipped_old
            if outcome.error:
                s.failures += 1
                s.failed_connections.append(connection_id)


@dataclass(frozen=True)
class _Scope:
    """What every worker thread of a run polls, and with what."""

    mailbox_source: ImapSource  # connections with a relay mailbox
    default_source: MessageSource | None  # the others (None: they are not claimed)
    tokens: AccessTokenProvider
    should_stop: StopCheck
    tenant_id: str | None
    connection_id: str | None
    force: bool


def _worker_loop(run: _Run, scope: _Scope, *, worker: str) -> None:
    if connection.vendor == "postgresql":
        # The cursor advances in the same transaction as the messages, so a commit lost in a
        # database crash is only fetched again on the next run; not waiting for the WAL flush at
        # every connection's commit is safe here and saves a disk sync per connection. A source
        # that acknowledges messages (deletes or flags them at the source) must not rely on this:
        # it acknowledges only after a commit made with synchronous_commit on.
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
    while not scope.should_stop():
        wanted = run.reserve(settings.AMAZON_POLL_CLAIM_BATCH)
        if not wanted:
            return
        claimed = connections_claim(
            worker=worker,
            limit=wanted,
            tenant_id=scope.tenant_id,
            connection_id=scope.connection_id,
            force=scope.force,
            untouched_since=run.started_at,
            mailboxes_only=scope.default_source is None,
        )
        run.give_back(wanted - len(claimed))
        if not claimed:
            return
        for index, item in enumerate(claimed):
            if scope.should_stop():
                rest = [c.snapshot.id for c in claimed[index:]]
                leases_release(worker=worker, connection_ids=rest)
                run.give_back(len(rest))
                return
            source = scope.mailbox_source if item.snapshot.mailbox else scope.default_source
            if source is None:  # a mailbox deleted since the claim: give the connection back
                leases_release(worker=worker, connection_ids=[item.snapshot.id])
                run.give_back(1)
                continue
            run.record(item.snapshot.id, connection_poll(claimed=item, source=source, tokens=scope.tokens))


def _run_threads(run: _Run, scope: _Scope, *, worker: str, workers: int) -> None:
    errors: list[BaseException] = []

    def thread_main(name: str) -> None:
        try:
            _worker_loop(run, scope, worker=name)
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


def poll_run(
    *,
    limit: int | None = None,
    tenant_id: str | None = None,
    connection_id: str | None = None,
    force: bool = False,
    should_stop: StopCheck = lambda: False,
    tokens: AccessTokenProvider | None = None,
    worker: str | None = None,
    workers: int | None = None,
) -> PollSummary:
    """Polls every due connection once (or `limit` of them), `workers` at a time.

    Threads, because a real source spends its time waiting on Amazon: several connections are
    polled at once, each thread with its own database connection. SQLite, which serializes
    writers, always gets one. Raises PollerConfigurationError, or PollerUnavailable.
    """
    started = time.monotonic()
    run = _Run(limit)
    worker = worker or worker_name()
    try:
        source = default_source()
        # Checked once up front (a missing app is the operator's to fix), then reused for every token.
        app = load_app_credentials() if source is not None and source.needs_access_token else None
    except (SourceConfigurationError, AppCredentialsMissing) as exc:
        raise PollerConfigurationError(str(exc)) from None
    except AppCredentialsUnavailable as exc:
        raise PollerUnavailable(str(exc)) from None
    scope = _Scope(
        mailbox_source=ImapSource(),
        default_source=source,
        tokens=tokens or AccessTokenProvider(app=app),
        should_stop=should_stop,
        tenant_id=tenant_id,
        connection_id=connection_id,
        force=force,
    )
    workers = 1 if connection.vendor == "sqlite" else max(workers or settings.AMAZON_POLL_WORKERS, 1)
    if workers == 1:
        _worker_loop(run, scope, worker=worker)
    else:
        _run_threads(run, scope, worker=worker, workers=workers)
    summary = run.summary
    summary.seconds = time.monotonic() - started
    # Metrics: the run's figures go to the database, where GET /metrics and the dashboard read them.
    poll_run_record(
        worker=worker,
        started_at=run.started_at,
        connections=summary.connections,
        fetched=summary.fetched,
        new_messages=summary.new_messages,
        new_tickets=summary.new_tickets,
        quarantined=summary.quarantined,
        recorded=summary.recorded,
        ignored=summary.ignored,
        skipped_old=summary.skipped_old,
        failures=summary.failures,
        seconds=summary.seconds,
    )
    return summary
