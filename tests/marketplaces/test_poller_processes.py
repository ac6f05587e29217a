"""The poller as cron runs it: real processes, on PostgreSQL, started together or killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.db.models import Count
from django.utils import timezone

from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection
from tests.factories import make_tenant
from tickets.models import Ticket, TicketMessage

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    s = db_connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def poller_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMAZON_", "DATABASE_URL"))}
    env.update(
        {
            "KEYBUZZ_ENV_FILE": "none",
            "DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url(),
            "SECRETS_LOCAL_PATH": str(tmp_path / "secrets.json"),
            "AMAZON_USE_MOCK": "true",
            "AMAZON_SPAPI_APP_SOURCE": "external_test",
        }
    )
    env.update(extra)
    return env


def start_poller(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "poll_amazon", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def make_connections(count: int) -> list[MarketplaceConnection]:
    tenants = [make_tenant() for _ in range(max(count // 10, 1))]
    return MarketplaceConnection.objects.bulk_create(
        [
            MarketplaceConnection(
                tenant=tenants[i % len(tenants)],
                selling_partner_id=f"SELLER{i:04d}",
                status=ConnectionStatus.CONNECTED,
                app_source="external_test",
                region="EU",
                connected_at=timezone.now(),
            )
            for i in range(count)
        ]
    )


def wait_for_its_sessions_to_end(timeout: float = 30.0) -> None:
    """A killed client's PostgreSQL sessions outlive it until they notice: a COMMIT sent just before
    the kill still lands after it. Counting what the dead worker left before then undercounts."""
    deadline = time.monotonic() + timeout
    with db_connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            assert time.monotonic() < deadline, "the killed poller's database sessions did not end"
            time.sleep(0.05)


def assert_each_message_filed_once(connections: int, per_connection: int) -> None:
    total = connections * per_connection
    assert ExternalMessage.objects.count() == total
    assert TicketMessage.objects.count() == total
    assert Ticket.objects.count() == total  # the mock's first window opens one thread per message
    filed = TicketMessage.objects.values_list("external_message_id", flat=True)
    assert set(filed) == set(ExternalMessage.objects.values_list("id", flat=True))  # every message filed, once
    assert not TicketMessage.objects.values("external_message_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    per_conn = set(ExternalMessage.objects.values("connection").annotate(n=Count("id")).values_list("n", flat=True))
    assert per_conn == {per_connection}
    assert not MarketplaceConnection.objects.filter(last_polled_at__isnull=True).exists()
    assert not MarketplaceConnection.objects.exclude(lease_owner="").exists()


def test_four_pollers_at_once_file_every_message_exactly_once(requires_postgres, tmp_path):
    make_connections(200)
    env = poller_env(tmp_path, AMAZON_POLL_CLAIM_BATCH="5")
    workers = [start_poller(env, "--once", "--json") for _ in range(4)]
    results = [w.communicate(timeout=240) for w in workers]

    summaries = []
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err[-2000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(s["connections"] for s in summaries) == 200
    assert sum(s["new_messages"] for s in summaries) == 600
    assert sum(s["new_tickets"] for s in summaries) == 600
    assert sum(1 for s in summaries if s["connections"]) >= 2, "the workers shared the connections"
    assert_each_message_filed_once(200, 3)


def test_poller_killed_mid_run_then_rerun_loses_and_doubles_nothing(requires_postgres, tmp_path):
    make_connections(200)
    env = poller_env(
        tmp_path, AMAZON_MOCK_MESSAGES_PER_POLL="20", AMAZON_POLL_LEASE_SECONDS="2", AMAZON_POLL_CLAIM_BATCH="10"
    )
    victim = start_poller(env, "--once")
    completed = 0
    deadline = time.monotonic() + 120
    while completed < 25 and time.monotonic() < deadline:
        line = victim.stderr.readline()
        if not line:
            break
        completed += "Poll completed" in line
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    wait_for_its_sessions_to_end()
    assert completed == 25, "the poller was killed in the middle of its run (of a claimed batch, too)"

    # What the killed worker committed is whole: a connection has all its messages or none.
    polled = MarketplaceConnection.objects.filter(last_polled_at__isnull=False).count()
    assert 25 <= polled < 200
    assert ExternalMessage.objects.count() == TicketMessage.objects.count() == polled * 20
    assert MarketplaceConnection.objects.exclude(lease_owner="").exists(), "its leases are still held"

    time.sleep(2.5)  # the dead worker's leases expire
    rerun = start_poller(env, "--once", "--json")
    out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["connections"] == 200 - polled
    assert_each_message_filed_once(200, 20)


def test_loop_mode_stops_cleanly_on_sigterm(requires_postgres, tmp_path):
    make_connections(3)
    poller = start_poller(poller_env(tmp_path), "--interval", "60")
    first = poller.stdout.readline()  # the first run's summary; then it sleeps until the next run
    assert "connections=3" in first
    started = time.monotonic()
    poller.send_signal(signal.SIGTERM)
    poller.communicate(timeout=20)
    assert poller.returncode == 0
    assert time.monotonic() - started < 5
    assert ExternalMessage.objects.count() == 9
    assert not MarketplaceConnection.objects.exclude(lease_owner="").exists()
