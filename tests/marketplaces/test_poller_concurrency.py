"""The shipped concurrency of a poll run: many connections fetched at once (a fetch waits on the
network), their database steps through a few database connections, each connection polled once per
run; and claims that read about as many rows as they take, at the end of a run as at its start."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplaces.models import MarketplaceConnection
from marketplaces.polling import poll_run
from marketplaces.polling.claim import ClaimProgress, connections_claim
from marketplaces.sources.base import ConnectionSnapshot, FetchResult
from marketplaces.sources.mock import MockAmazonSource
from tests.factories import make_connection
from tests.marketplaces.test_poller_processes import make_connections

CONNECTIONS = 120


class WaitingSource(MockAmazonSource):
    """The mock, waiting in every fetch as a network round trip does; counts the fetches in flight."""

    needs_access_token = False
    delay = 0.05
    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0
    fetched: list[str] = []

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult:
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
            cls.fetched.append(connection.id)
        try:
            time.sleep(cls.delay)
            return super().fetch(connection, access_token=access_token)
        finally:
            with cls.lock:
                cls.in_flight -= 1


@pytest.fixture
def waiting_source(settings):
    settings.AMAZON_MESSAGE_SOURCE = f"{__name__}.WaitingSource"
    # Every poll brings a batch, and a polled connection is due again at once: only the run's own
    # bookkeeping keeps it from being taken twice.
    settings.AMAZON_MOCK_WINDOW_SECONDS = 0
    settings.AMAZON_POLL_INTERVAL_SECONDS = 0
    WaitingSource.in_flight = WaitingSource.most_in_flight = 0
    WaitingSource.fetched = []
    return WaitingSource


@contextmanager
def connections_opened() -> Iterator[list[tuple[str, Any]]]:
    """(thread name, connection) of every database connection opened meanwhile."""
    opened: list[tuple[str, Any]] = []

    def record(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append((threading.current_thread().name, connection))

    connection_created.connect(record, weak=False)
    try:
        yield opened
    finally:
        connection_created.disconnect(record)


@pytest.mark.django_db(transaction=True)
def test_many_fetches_at_once_through_a_few_database_connections(requires_postgres, settings, waiting_source):
    ids = {str(c.id) for c in make_connections(CONNECTIONS)}
    opened_connections: list[tuple[str, Any]] = []
    for run in (1, 2):  # never polled, then polled before (and due again)
        with connections_opened() as opened:
            summary = poll_run()
        opened_connections += opened
        assert (summary.connections, summary.failures, summary.new_messages) == (CONNECTIONS, 0, CONNECTIONS * 3)
        counts = Counter(waiting_source.fetched)
        assert set(counts) == ids and set(counts.values()) == {run}, "each connection fetched once per run"

    # The shipped settings: far more fetches at once than database connections.
    assert settings.AMAZON_POLL_WORKERS >= 4 * settings.AMAZON_POLL_DB_CONNECTIONS
    assert waiting_source.most_in_flight > 2 * settings.AMAZON_POLL_DB_CONNECTIONS
    # Only the run's database threads opened connections, never more than the setting at once
    # (each run's, one run after the other), and they were closed at its end.
    assert opened_connections
    assert {name.rsplit("-", 1)[0] for name, _ in opened_connections} == {"poller-db"}
    assert len(opened_connections) <= 2 * settings.AMAZON_POLL_DB_CONNECTIONS
    assert all(wrapper.connection is None for _, wrapper in opened_connections)
    assert not MarketplaceConnection.objects.exclude(lease_owner="").exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_told_to_stop_gives_back_what_it_has_not_polled(requires_postgres, settings, waiting_source):
    settings.AMAZON_POLL_INTERVAL_SECONDS = 300
    make_connections(CONNECTIONS)
    calls = iter(range(10**6))
    summary = poll_run(should_stop=lambda: next(calls) >= 30)
    assert 0 < summary.connections < CONNECTIONS
    assert len(waiting_source.fetched) == summary.connections
    assert not MarketplaceConnection.objects.exclude(lease_owner="").exists(), "no lease left to run out"
    assert MarketplaceConnection.objects.filter(last_polled_at__isnull=False).count() == summary.connections
    assert poll_run().connections == CONNECTIONS - summary.connections


# --- Claims ----------------------------------------------------------------------------------------


def _claim_plans(**claim: Any) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of the candidate queries of one claim (the SELECT … FOR UPDATE SKIP LOCKED)."""
    with CaptureQueriesContext(db_connection) as queries:
        connections_claim(worker="w", **claim)
    plans = []
    with transaction.atomic(), db_connection.cursor() as cursor:
        for query in queries.captured_queries:
            if "SKIP LOCKED" in query["sql"]:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query['sql']}")
                plans.append(cursor.fetchone()[0][0]["Plan"])
        transaction.set_rollback(True)
    return plans


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


@pytest.mark.django_db
def test_a_claim_reads_what_it_takes_not_every_due_connection(requires_postgres):
    make_connections(2000)
    MarketplaceConnection.objects.filter(selling_partner_id__gte="SELLER1000").update(
        next_poll_at=timezone.now() - timedelta(minutes=1)
    )
    never_polled = _claim_plans(limit=20)
    due = _claim_plans(limit=20, progress=ClaimProgress(never_polled_left=False))
    for plan in (*never_polled, *due):
        nodes = _nodes(plan)
        assert not [n for n in nodes if "Sort" in n["Node Type"]], "a claim must not sort every due connection"
        scans = [n for n in nodes if "Scan" in n["Node Type"]]
        assert [n["Node Type"] for n in scans] == ["Index Scan"] and scans[0]["Index Name"] == "connection_due"
        assert scans[0]["Actual Rows"] <= 20  # read in index order, only as far as the claim needs


@pytest.mark.django_db
def test_a_run_claims_from_where_it_stopped():
    now = timezone.now()
    for n in range(3):
        make_connection(seller=f"NEW{n}")
    for minutes in (3, 2, 1):
        make_connection(seller=f"DUE{minutes}", next_poll_at=now - timedelta(minutes=minutes))
    progress = ClaimProgress()

    def claim(limit: int, progress: ClaimProgress = progress) -> list[str]:
        return sorted(
            c.snapshot.selling_partner_id for c in connections_claim(worker="w", limit=limit, progress=progress)
        )

    first = claim(2)
    assert len(first) == 2 and all(seller.startswith("NEW") for seller in first)  # never polled: first
    assert progress.never_polled_left and progress.due_from is None
    second = claim(2)  # the last never-polled one, then the oldest due one
    assert second == sorted([*({"NEW0", "NEW1", "NEW2"} - set(first)), "DUE3"])
    assert not progress.never_polled_left and progress.due_from == now - timedelta(minutes=3)
    make_connection(seller="ADDED")  # connected during the run: for the next run
    assert claim(5) == ["DUE1", "DUE2"]
    assert claim(5, ClaimProgress()) == ["ADDED"]
