"""PostgreSQL restarted in the middle of a poll run (a private cluster, not the suite's server): the
run fails cleanly, with one line, and the next run files everything exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from tests.marketplaces.test_poller_processes import ROOT
from tests.pg_cluster import INSTALL_HINT, cluster_available, start_cluster

CONNECTIONS, PER_CONNECTION = 200, 20


@pytest.fixture
def cluster(tmp_path):
    if not cluster_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL's server binaries are missing ({INSTALL_HINT})")
        pytest.skip(f"PostgreSQL's server binaries are missing ({INSTALL_HINT})")
    with start_cluster(tmp_path) as running:
        running.create_database("keybuzz")
        yield running


def run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM marketplaces_externalmessage), (SELECT count(*) FROM tickets_ticketmessage)"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_poll_run_survives_a_database_restart_and_the_next_files_everything_once(cluster, tmp_path):
    url = cluster.url("keybuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMAZON_", "DATABASE_URL"))}
    env.update(
        KEYBUZZ_ENV_FILE="none",
        DEBUG="true",
        DATABASE_URL=url,
        SECRETS_LOCAL_PATH=str(tmp_path / "secrets.json"),
        AMAZON_USE_MOCK="true",
        AMAZON_MOCK_MESSAGES_PER_POLL=str(PER_CONNECTION),
        AMAZON_POLL_LEASE_SECONDS="2",
        AMAZON_POLL_CLAIM_BATCH="5",
        PYTHONUNBUFFERED="1",
    )
    migrated = run(env, "manage.py", "migrate", "--no-input", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    seeded = run(env, "-m", "tests.faults.seed", str(CONNECTIONS))
    assert seeded.returncode == 0, seeded.stderr

    poller = subprocess.Popen(
        [sys.executable, "manage.py", "poll_amazon", "--once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while counts(url)[0] < PER_CONNECTION * 20:  # well under way
        assert time.monotonic() < deadline and poller.poll() is None, poller.communicate()
        time.sleep(0.05)
    cluster.restart("fast")
    out, err = poller.communicate(timeout=120)

    assert poller.returncode == 1, out + err
    assert "[Amazon Poller] Run error: database unavailable" in err
    assert "Traceback" not in err  # one clear line, not a crash dump
    messages, filed = counts(url)
    assert 0 < messages < CONNECTIONS * PER_CONNECTION and messages == filed

    time.sleep(2.2)  # the interrupted run's leases run out
    again = run(env, "manage.py", "poll_amazon", "--once", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0
    check = run(env, "-m", "tests.faults.seed", "--check", str(CONNECTIONS), str(PER_CONNECTION))
    assert check.returncode == 0, check.stdout + check.stderr
