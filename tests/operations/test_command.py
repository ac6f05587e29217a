"""`manage.py keybuzz_metrics`: aligned text for a person, JSON for a script, per tenant on demand."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from marketplaces.models import ConnectionStatus
from marketplaces.polling.records import poll_run_record
from operations.selectors import start_of_day
from tests.factories import make_tenant
from tests.operations.conftest import make_amazon_ticket, make_connection, make_message

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("keybuzz_metrics", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def data():
    now = timezone.now()
    acme, globex = make_tenant("acme"), make_tenant("globex")
    c = make_connection(acme, last_polled_at=now - timedelta(seconds=90))
    make_connection(acme, status=ConnectionStatus.ERROR)
    g = make_connection(globex, last_polled_at=now - timedelta(seconds=30))
    make_connection(globex, app_source="keybuzz")  # the other app: NEEDS_REAUTH
    for _ in range(4):
        make_message(c, created_at=now)
    make_message(g, created_at=now)
    make_message(g, created_at=start_of_day(now) - timedelta(hours=1))
    make_amazon_ticket(c, created_at=now)
    poll_run_record(
        worker="web1:42:abc",
        started_at=now - timedelta(seconds=62),
        finished_at=now - timedelta(seconds=60),
        connections=2,
        fetched=5,
        new_messages=5,
        new_tickets=1,
        quarantined=0,
        failures=0,
        seconds=2.25,
    )
    return now


def test_text_answers_the_runbook_questions(data):
    lines = run().splitlines()
    assert lines[0].startswith("KeyBuzz metrics, all tenants, at ")
    rows = {line[:32].strip(): line[32:] for line in lines[1:]}  # label column, then value
    assert rows["Active Amazon connections"].startswith("2  (of 4 Amazon connections)")
    assert rows["Messages polled today"].startswith("5")
    assert rows["Amazon tickets today"].startswith("1")
    assert rows["Connections in ERROR"] == "1"
    assert rows["Connections NEEDS_REAUTH"].startswith("1")
    assert re.match(r"1 min 3\d s  \(9\d s, among active connections\)", rows["Oldest last poll"])
    assert re.fullmatch(r"1 min( \d+ s)? ago  \(took 2\.25 s, 2 connections, 0 failures\)", rows["Last poll run"])
    assert rows["Poller"] == "OK"
    # Aligned: every value starts in the same column, after the longest label and two spaces.
    assert all(line[30:32] == "  " and line[32] != " " for line in lines[1:]), lines


def test_json_is_one_object(data):
    figures = json.loads(run("--json"))
    assert figures["tenant"] is None
    assert figures["active_connections"] == 2
    assert figures["messages_today"] == 5 and figures["tickets_today"] == 1
    assert figures["connections_error"] == 1 and figures["connections_needs_reauth"] == 1
    assert 89 <= figures["oldest_poll_age_seconds"] <= 95
    assert figures["last_poll_run"]["connections"] == 2 and figures["last_poll_run"]["worker"] == "web1:42:abc"
    assert figures["poller_stalled"] is False
    assert figures["generated_at"].endswith("Z")


def test_per_tenant(data):
    acme = json.loads(run("--json", "--tenant", "acme"))
    globex = json.loads(run("--json", "--tenant", "globex"))
    assert (acme["tenant"], acme["messages_today"], acme["connections_error"]) == ("acme", 4, 1)
    assert (globex["tenant"], globex["messages_today"], globex["connections_needs_reauth"]) == ("globex", 1, 1)
    assert run("--tenant", "globex").splitlines()[0].startswith("KeyBuzz metrics, tenant globex, at ")


def test_unknown_tenant_is_an_operator_error(data):
    with pytest.raises(CommandError, match="No tenant with the slug 'nope'") as exc:
        run("--tenant", "nope")
    assert exc.value.returncode == 2


def test_a_stalled_poller_is_spelled_out(settings):
    settings.METRICS_POLL_STALE_SECONDS = 900
    make_connection(make_tenant(), last_polled_at=timezone.now() - timedelta(hours=2))
    out = run()
    assert "Oldest last poll                2 h" in out
    assert "Last poll run                   never  (no run recorded: is the poll_amazon cron installed?)" in out
    assert "Poller                          STALLED  (nothing polled for more than 15 min)" in out
