"""One run of the poller: every due connection once (or `limit` of them), `AMAZON_POLL_WORKERS`
at a time through at most `AMAZON_POLL_DB_CONNECTIONS` database connections, then the run's
figures for the operators."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from keybuzz.workers import worker_name
from keybuzz.workers.runner import RunUnavailable, StopCheck
from marketplaces.amazon.app import AppCredentialsMissing, AppCredentialsUnavailable, load_app_credentials
from marketplaces.amazon.tokens import AccessTokenProvider
from marketplaces.polling.claim import ClaimedConnection, ClaimProgress, connections_claim, leases_release
from marketplaces.polling.connection import ConnectionOutcome, connection_poll
from marketplaces.polling.database import Database, DatabaseThreads, Inline, close_connection, session_setup
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
        self.claims = ClaimProgress()
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


class _Feed:
    """The run's claimed connections, handed to its polling threads one at a time.

    One claim at a time (`AMAZON_POLL_CLAIM_BATCH` connections, leased to the run), made by the
    thread whose take leaves fewer than half a batch: the others go on with what is left meanwhile,
    and wait only if it runs out first. So a connection is leased shortly before a thread takes it:
    at most two batches and the connections in hand are leased at once, however many threads poll,
    and a lease covers a connection's own poll, not the wait behind a thread's whole batch (with a
    batch per thread, that wait grew with the number of threads sharing the database)."""

    def __init__(self, run: _Run, scope: _Scope, *, worker: str, database: Database) -> None:
        self.run = run
        self.scope = scope
        self.worker = worker
        self.database = database
        self._items: deque[ClaimedConnection] = deque()
        self._changed = threading.Condition()
        self._claiming = False
        self._dry = False  # nothing more to claim in this run (or the feed is closed)

    def take(self) -> ClaimedConnection | None:
        """The next connection to poll; None once nothing is due (or the run's limit is reached)."""
        while True:
            with self._changed:
                while not self._items and self._claiming:
                    self._changed.wait()
                item = self._items.popleft() if self._items else None
                if item is None and self._dry:
                    return None
                low = len(self._items) < max(settings.AMAZON_POLL_CLAIM_BATCH // 2, 1)
                claim = low and not self._claiming and not self._dry
                self._claiming = self._claiming or claim
            if claim:
                self._claim()
            if item is not None:
                return item

    def _claim(self) -> None:
        claimed: list[ClaimedConnection] = []
        wanted = self.run.reserve(settings.AMAZON_POLL_CLAIM_BATCH)
        try:
            if wanted:
                claimed = self.database.call(
                    connections_claim,
                    worker=self.worker,
                    limit=wanted,
                    tenant_id=self.scope.tenant_id,
                    connection_id=self.scope.connection_id,
                    force=self.scope.force,
                    untouched_since=self.run.started_at,
                    mailboxes_only=self.scope.default_source is None,
                    progress=self.run.claims,
                )
        finally:
            self.run.give_back(wanted - len(claimed))
            with self._changed:
                self._claiming = False
                if not self._dry:  # closed meanwhile (the run failed): their leases run out
                    self._items.extend(claimed)
                    self._dry = not claimed
                self._changed.notify_all()

    def give_back(self, items: list[ClaimedConnection]) -> None:
        """Releases connections claimed but not polled: due again at once, for another run."""
        if items:
            self.database.call(leases_release, worker=self.worker, connection_ids=[c.snapshot.id for c in items])
            self.run.give_back(len(items))

    def close_on_error(self) -> None:
        """No more claims (the run failed: the other threads stop after the connection in hand);
        what is left keeps its lease until it runs out, as the database may be gone."""
        with self._changed:
            self._items.clear()
            self._dry = True
            self._changed.notify_all()

    def close(self) -> None:
        """No more claims; what is left unpolled (the run stopped early) is given back."""
        with self._changed:
            rest = list(self._items)
            self._items.clear()
            self._dry = True
        self.give_back(rest)


def _poll_loop(feed: _Feed) -> None:
    """Polls the feed's connections one by one until it is dry or the run is told to stop (after the
    connection in hand). The fetch, which waits on the network, runs in this thread; the database
    steps go through the feed's `database`."""
    scope, run = feed.scope, feed.run
    while not scope.should_stop():
        item = feed.take()
        if item is None:
            return
        source = scope.mailbox_source if item.snapshot.mailbox else scope.default_source
        if source is None:  # a mailbox deleted since the claim: give the connection back
            feed.give_back([item])
            continue
        outcome = connection_poll(claimed=item, source=source, tokens=scope.tokens, database=feed.database)
        run.record(item.snapshot.id, outcome)


def _run_threads(feed: _Feed, *, workers: int) -> None:
    """`workers` polling threads sharing the feed, none with a database connection of its own."""
    errors: list[BaseException] = []

    def thread_main() -> None:
        try:
            _poll_loop(feed)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
            feed.close_on_error()
        finally:
            # Nothing here opens one (sources never touch the database): if some code did, it is closed.
            close_connection()

    threads = [threading.Thread(target=thread_main, name=f"poller-{n}") for n in range(workers)]
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

    Threads, because a real source spends its time waiting on Amazon (or an IMAP server): many
    connections are polled at once, and their database steps share at most
    `AMAZON_POLL_DB_CONNECTIONS` connections (`marketplaces.polling.database`), so the connections a
    run holds do not grow with `workers`. One worker polls in the calling thread, on its connection;
    SQLite, which serializes writers, always gets one. Raises PollerConfigurationError, or
    PollerUnavailable.
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
        session_setup()
        feed = _Feed(run, scope, worker=worker, database=Inline())
        _poll_loop(feed)
        feed.close()
        _record(run, worker=worker, started=started, database=Inline())
        return run.summary
    database = DatabaseThreads(max(min(settings.AMAZON_POLL_DB_CONNECTIONS, workers), 1))
    try:
        feed = _Feed(run, scope, worker=worker, database=database)
        _run_threads(feed, workers=workers)
        feed.close()
        _record(run, worker=worker, started=started, database=database)
    finally:
        database.close()
    return run.summary


def _record(run: _Run, *, worker: str, started: float, database: Database) -> None:
    summary = run.summary
    summary.seconds = time.monotonic() - started
    # Metrics: the run's figures go to the database, where GET /metrics and the dashboard read them.
    database.call(
        poll_run_record,
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
