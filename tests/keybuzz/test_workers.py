"""The shared worker runtime (keybuzz.workers): leased claims, backoff, the once/loop runner and the
worker command base, on rows of a real table (marketplace connections)."""

from __future__ import annotations

import io
import logging
import signal
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from keybuzz.workers import worker_name
from keybuzz.workers.backoff import backoff_delay
from keybuzz.workers.leases import Lease
from keybuzz.workers.runner import RunUnavailable, run_worker
from marketplaces.models import MarketplaceConnection
from tests.factories import make_connection, make_tenant
from tests.net import free_port

LEASE = Lease(owner_field="lease_owner", expires_field="lease_expires_at")
LOGGER = logging.getLogger("tests.workers")


def due(now):
    return MarketplaceConnection.objects.filter(LEASE.free(now))


def claim(worker: str, *, now=None, limit: int = 10, **kwargs):
    now = now or timezone.now()
    return LEASE.claim(
        due(now),
        worker=worker,
        until=now + timedelta(minutes=5),
        limit=limit,
        order_by=["selling_partner_id"],
        **kwargs,
    )


# --- Backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    delays = [backoff_delay(n, base_seconds=60, max_seconds=300).total_seconds() for n in range(1, 7)]
    assert delays == [60, 120, 240, 300, 300, 300]
    assert backoff_delay(0, base_seconds=60, max_seconds=300) == timedelta(seconds=60)  # no failure yet: the base


# --- Leases -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_claim_marks_the_rows_and_returns_them_in_order():
    tenant = make_tenant()
    for seller in ("C", "A", "B"):
        make_connection(tenant, seller=seller)

    rows = claim("w1", limit=2)

    assert [r.selling_partner_id for r in rows] == ["A", "B"]
    assert {(r.lease_owner, r.lease_expires_at is not None) for r in rows} == {("w1", True)}
    stored = dict(MarketplaceConnection.objects.values_list("selling_partner_id", "lease_owner"))
    assert stored == {"A": "w1", "B": "w1", "C": ""}


@pytest.mark.django_db
def test_held_rows_are_not_claimed_again_until_their_lease_runs_out():
    make_connection(seller="A")
    t0 = timezone.now()
    assert [r.lease_owner for r in claim("w1", now=t0)] == ["w1"]

    assert claim("w2", now=t0 + timedelta(minutes=4)) == []
    taken_over = claim("w2", now=t0 + timedelta(minutes=6))  # the first worker died
    assert [r.lease_owner for r in taken_over] == ["w2"]


@pytest.mark.django_db
def test_a_claim_writes_its_extra_values_and_release_gives_rows_back():
    connection_row = make_connection(seller="A", consecutive_failures=2)

    [row] = claim("w1", also={"consecutive_failures": F("consecutive_failures") + 1})
    assert row.consecutive_failures == 3

    assert LEASE.release(MarketplaceConnection.objects.all(), worker="someone-else") == 0
    assert LEASE.release(MarketplaceConnection.objects.all(), worker="w1") == 1
    connection_row.refresh_from_db()
    assert (connection_row.lease_owner, connection_row.lease_expires_at) == ("", None)
    assert [r.lease_owner for r in claim("w2")] == ["w2"]


@pytest.mark.django_db
def test_held_by_matches_only_the_holder():
    make_connection(seller="A")
    claim("w1")
    assert MarketplaceConnection.objects.filter(LEASE.held_by("w1")).count() == 1
    assert MarketplaceConnection.objects.filter(LEASE.held_by("w2")).count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_take_disjoint_rows_without_waiting(requires_postgres):
    tenant = make_tenant()
    for n in range(40):
        make_connection(tenant, seller=f"S{n:02d}")
    start = threading.Barrier(4)
    taken: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        try:
            start.wait()
            mine: list[str] = []
            while rows := claim(name, limit=3):
                mine.extend(r.selling_partner_id for r in rows)
            taken[name] = mine
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    every = [seller for mine in taken.values() for seller in mine]
    assert sorted(every) == [f"S{n:02d}" for n in range(40)]  # each row claimed once, none left


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_a_claim_in_progress_is_skipped(requires_postgres):
    tenant = make_tenant()
    locked, free = make_connection(tenant, seller="A"), make_connection(tenant, seller="B")
    holding, done = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                list(MarketplaceConnection.objects.select_for_update().filter(pk=locked.pk))
                holding.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        rows = claim("w1")
    finally:
        done.set()
        thread.join(timeout=30)
    assert [r.pk for r in rows] == [free.pk]


# --- The runner -------------------------------------------------------------------------------


def test_once_runs_one_time_and_reports_it():
    reported = []
    result = run_worker(
        once=True, interval=1, run=lambda should_stop: "done", report=reported.append, logger=LOGGER, log_prefix="[T]"
    )
    assert (result, reported) == ("done", ["done"])


def test_once_lets_a_database_error_through():
    def run(should_stop):
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        run_worker(once=True, interval=1, run=run, report=lambda r: None, logger=LOGGER, log_prefix="[T]")


def test_the_loop_survives_a_database_error_and_a_missing_dependency(caplog):
    stop = threading.Event()
    outcomes = iter([OperationalError("connection refused"), RunUnavailable("secret store sealed"), "ok"])
    reported = []

    def run(should_stop):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        stop.set()
        return outcome

    with caplog.at_level(logging.ERROR, logger="tests.workers"):
        last = run_worker(
            once=False, interval=0, run=run, report=reported.append, logger=LOGGER, log_prefix="[T]", stop=stop
        )

    assert (last, reported) == ("ok", ["ok"])
    assert "[T] Run error: OperationalError: connection refused" in caplog.text
    assert "[T] Run error: RunUnavailable: secret store sealed" in caplog.text


def test_sigterm_stops_the_loop_after_the_run_in_hand_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    runs = []

    def run(should_stop):
        runs.append(should_stop())
        signal.raise_signal(signal.SIGTERM)  # as `systemctl stop` or `kill` would, mid-run
        runs.append(should_stop())  # the run in hand sees it and can finish cleanly
        return len(runs)

    last = run_worker(once=False, interval=3600, run=run, report=lambda r: None, logger=LOGGER, log_prefix="[T]")

    assert runs == [False, True] and last == 2  # one run only: the 3600 s wait was cut short
    assert signal.getsignal(signal.SIGTERM) == before


def test_worker_names_are_unique_per_start():
    first, second = worker_name(), worker_name()
    assert first != second and first.split(":")[:2] == second.split(":")[:2]  # same host and pid


# --- The command base (through send_replies, the smallest worker command) ----------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--once", "--limit", "0"], "--limit must be at least 1"),
        (["--interval", "0.5"], "--interval must be at least 1 second"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message):
    with pytest.raises(CommandError, match=message) as caught:
        call_command("send_replies", *args, stdout=io.StringIO())
    assert caught.value.returncode == 2


@pytest.mark.django_db
def test_a_dependency_down_in_once_mode_exits_1_with_the_reason(settings):
    """poll_amazon with a real source needs the app's credentials from Vault; Vault is down."""
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    settings.AMAZON_SPAPI_CLIENT_ID = settings.AMAZON_SPAPI_CLIENT_SECRET = settings.AMAZON_SPAPI_APPLICATION_ID = ""
    settings.SECRETS_BACKEND = "vault"
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.VAULT_TOKEN = "hvs.not-a-real-token-000000000000"
    settings.VAULT_TIMEOUT = 1.0

    with pytest.raises(CommandError, match=r"\[Amazon Poller\] Run error: .*unreachable") as caught:
        call_command("poll_amazon", "--once", stdout=io.StringIO())
    assert caught.value.returncode == 1
