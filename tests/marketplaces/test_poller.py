"""`poll_amazon`: Amazon messages become tickets exactly once, and one failure never stops the rest."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
import responses
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keybuzz.secrets import get_secret_store
from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection, QuarantinedMessage
from marketplaces.polling import poll_run
from tests.factories import make_connection
from tests.marketplaces.scripted_sources import ScriptedSource, TokenScriptedSource, raw_message
from tickets.models import Direction, Ticket, TicketMessage, TicketStatus

pytestmark = pytest.mark.django_db

LWA_URL = "https://api.amazon.com/auth/o2/token"
REFRESH_TOKEN = "Atzr|poller-test-refresh-token-0123456789"


def poll(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("poll_amazon", "--once", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


@pytest.fixture(autouse=True)
def one_worker(settings):
    # These tests run inside a transaction that other threads' connections cannot see; the
    # threaded runs are tested in test_poller_processes.py.
    settings.AMAZON_POLL_WORKERS = 1


@pytest.fixture
def mock_amazon(settings):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_MOCK_MESSAGES_PER_POLL = 3


@pytest.fixture
def scripted(settings):
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.ScriptedSource"
    ScriptedSource.script = {}
    ScriptedSource.calls = []
    return ScriptedSource


@pytest.fixture
def clock(monkeypatch):
    """Moves Django's clock (the process boundary for time) forward."""
    real_now = timezone.now
    offset = {"delta": timedelta(0)}
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset["delta"])

    def advance(**kwargs):
        offset["delta"] += timedelta(**kwargs)

    return advance


# --- The runbook -------------------------------------------------------------------------------


def test_first_poll_gives_the_runbook_three_messages_three_tickets(mock_amazon, caplog):
    connection = make_connection()
    caplog.set_level(logging.INFO, logger="marketplaces.poller")

    code, out = poll()

    assert code == 0
    assert ExternalMessage.objects.filter(type="AMAZON").count() == 3
    assert Ticket.objects.filter(channel="AMAZON").count() == 3
    assert TicketMessage.objects.count() == 3
    tenant = connection.tenant_id
    text = caplog.text
    assert f"[Amazon Poller] Starting poll for tenant: {tenant}" in text
    assert f"[Amazon Poller] Fetched 3 messages for tenant {tenant}" in text
    assert f"[Amazon Poller] Poll completed for tenant: {tenant}" in text
    assert out.strip() == out.strip().splitlines()[-1]
    assert (
        "connections=1 fetched=3 new_messages=3 new_tickets=3 quarantined=0 recorded=0 ignored=0 skipped_old=0 failures=0"
        in out
    )

    ticket = Ticket.objects.order_by("id").first()
    message = ticket.messages.get()
    stored = ExternalMessage.objects.get(pk=message.external_message_id)
    assert stored.ticket == ticket
    assert (message.direction, message.body) == (Direction.INBOUND, stored.body)
    assert ticket.status == TicketStatus.OPEN and ticket.customer_name and ticket.order_id
    assert ticket.response_due_at == message.sent_at + timedelta(hours=24)
    connection.refresh_from_db()
    assert connection.last_polled_at is not None and connection.poll_cursor
    assert connection.lease_owner == "" and connection.lease_expires_at is None


def test_rerun_in_the_same_window_adds_nothing(mock_amazon):
    make_connection()
    poll()
    code, out = poll("--force")
    assert code == 0
    assert "connections=1 fetched=0 new_messages=0" in out
    assert (ExternalMessage.objects.count(), Ticket.objects.count(), TicketMessage.objects.count()) == (3, 3, 3)


def test_a_batch_fetched_twice_is_filed_once(mock_amazon):
    """As after a crash between the fetch and the commit: the same messages come again."""
    connection = make_connection()
    poll()
    Ticket.objects.update(status=TicketStatus.RESOLVED, response_due_at=None)
    before = list(Ticket.objects.order_by("id").values())
    MarketplaceConnection.objects.filter(pk=connection.pk).update(poll_cursor="", next_poll_at=None)
    code, out = poll()
    assert code == 0
    assert "fetched=3 new_messages=0 new_tickets=0" in out
    assert (ExternalMessage.objects.count(), Ticket.objects.count(), TicketMessage.objects.count()) == (3, 3, 3)
    assert list(Ticket.objects.order_by("id").values()) == before  # old messages reopen nothing
    connection.refresh_from_db()
    assert (connection.message_count, connection.ticket_count) == (3, 3)  # the status's counts, not twice


def test_follow_up_lands_on_its_ticket_and_reopens_it(mock_amazon, clock):
    make_connection()
    poll()
    first_tickets = list(Ticket.objects.order_by("id"))
    Ticket.objects.update(status=TicketStatus.RESOLVED, response_due_at=None)

    clock(minutes=6)  # the next poll window
    code, out = poll()

    assert code == 0
    assert "fetched=3 new_messages=3 new_tickets=2" in out
    assert Ticket.objects.count() == 5
    follow_up = ExternalMessage.objects.get(raw__subject__startswith="Re: ")
    followed = Ticket.objects.get(messages__external_message_id=follow_up.pk)
    assert followed in first_tickets
    assert followed.status == TicketStatus.OPEN
    assert followed.messages.count() == 2
    last = followed.messages.order_by("-sent_at").first()
    assert followed.last_message_at == last.sent_at
    assert followed.response_due_at == last.sent_at + timedelta(hours=24)
    assert Ticket.objects.filter(status=TicketStatus.RESOLVED).count() == 2  # the others stay resolved


def test_unanswered_ticket_keeps_its_first_due_time(scripted):
    make_connection(seller="S1")
    scripted.script = {"S1": [raw_message(1, thread="order:t")]}
    poll()
    due = Ticket.objects.get().response_due_at
    scripted.script = {"S1": [raw_message(2, thread="order:t")]}
    poll("--force")
    ticket = Ticket.objects.get()
    assert ticket.messages.count() == 2
    assert ticket.response_due_at == due


def test_queries_per_connection_do_not_grow_with_messages(scripted):
    make_connection(seller="FEW")
    make_connection(seller="MANY")
    scripted.script = {
        "FEW": [raw_message(n) for n in range(3)],
        # 45: SQLite gets multi-row VALUES in batches of 999 parameters (PostgreSQL one statement
        # whatever the size), and a ticket message has 20 columns.
        "MANY": [raw_message(n, thread=f"order:{n % 7}") for n in range(100, 145)],
    }
    with CaptureQueriesContext(db_connection) as few:
        poll("--connection", str(MarketplaceConnection.objects.get(selling_partner_id="FEW").id))
    with CaptureQueriesContext(db_connection) as many:
        poll("--connection", str(MarketplaceConnection.objects.get(selling_partner_id="MANY").id))
    assert ExternalMessage.objects.count() == 48
    assert Ticket.objects.count() == 3 + 7
    assert len(many) == len(few), [q["sql"][:80] for q in many.captured_queries]


# --- Bad messages, failures and isolation --------------------------------------------------------


def test_poison_message_is_quarantined_while_the_rest_land(scripted):
    connection = make_connection(seller="S1")
    scripted.script = {
        "S1": [
            raw_message(1),
            raw_message(2, sentAt="yesterday-ish"),
            {"messageId": "msg-3", "unexpected": True},
            raw_message(4, body="nul \x00 inside", subject="x" * 900),
            raw_message(5, threadId="t" * 300),
            raw_message(6, sentAt="1999-12-31T23:00:00+00:00"),
            raw_message(7, price=float("nan")),  # parses, but no database stores NaN in JSON
        ]
    }
    code, out = poll()
    assert code == 0
    assert "new_messages=2" in out and "quarantined=5" in out
    assert set(ExternalMessage.objects.values_list("external_id", flat=True)) == {"msg-1", "msg-4"}
    assert ExternalMessage.objects.get(external_id="msg-4").body == "nul  inside"
    reasons = dict(QuarantinedMessage.objects.values_list("external_id", "reason"))
    assert reasons == {
        "msg-2": "sentAt is not a date-time: 'yesterday-ish'",
        "msg-3": "missing threadId, sentAt, body",
        "msg-5": "thread key is empty or longer than 255 characters",
        "msg-6": "sent time out of range: 1999-12-31T23:00:00+00:00",
        "msg-7": reasons["msg-7"],
    }
    assert reasons["msg-7"].startswith("cannot be stored: ")
    assert QuarantinedMessage.objects.get(external_id="msg-7").raw["price"] is None
    connection.refresh_from_db()
    assert connection.last_error == "" and connection.poll_cursor == "after:7"
    assert Ticket.objects.count() == TicketMessage.objects.count() == 2


def test_one_failing_connection_never_stops_the_others(scripted, caplog):
    from marketplaces.sources import SourceError

    bad = make_connection(seller="BAD")
    make_connection(seller="GOOD")
    scripted.script = {"BAD": SourceError("Amazon answered 503"), "GOOD": [raw_message(1)]}

    code, out = poll()

    assert code == 1
    assert "connections=2" in out and "failures=1" in out and "new_messages=1" in out
    bad.refresh_from_db()
    assert bad.status == ConnectionStatus.CONNECTED
    assert bad.last_error == "Fetch failed: Amazon answered 503"
    assert bad.consecutive_failures == 1
    assert bad.next_poll_at > timezone.now() + timedelta(minutes=4)
    assert any("Amazon Poller" in r.message and "error" in r.message.lower() for r in caplog.records)


def test_failures_back_off_exponentially_up_to_a_cap(scripted, settings):
    from marketplaces.sources import SourceError

    settings.AMAZON_POLL_BACKOFF_BASE_SECONDS = 60
    settings.AMAZON_POLL_BACKOFF_MAX_SECONDS = 300
    bad = make_connection(seller="BAD")
    scripted.script = {"BAD": SourceError("down")}
    delays = []
    for _ in range(5):
        before = timezone.now()
        poll("--force")
        bad.refresh_from_db()
        delays.append(round((bad.next_poll_at - before).total_seconds() / 60))
    assert delays == [1, 2, 4, 5, 5]
    scripted.script = {"BAD": [raw_message(1)]}
    poll("--force")
    bad.refresh_from_db()
    assert (bad.consecutive_failures, bad.last_error) == (0, "")


def test_a_failing_connection_is_not_retried_before_its_backoff(scripted):
    from marketplaces.sources import SourceError

    make_connection(seller="BAD")
    scripted.script = {"BAD": SourceError("down")}
    assert poll()[0] == 1
    code, out = poll()
    assert code == 0 and "connections=0" in out


@pytest.mark.parametrize(
    "status",
    [ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.DISCONNECTED, ConnectionStatus.ERROR, ConnectionStatus.PENDING],
)
def test_connections_not_connected_are_skipped(mock_amazon, status):
    make_connection(status=status)
    code, out = poll()
    assert (code, ExternalMessage.objects.count()) == (0, 0)
    assert "connections=0" in out


def test_connections_of_the_other_app_are_skipped(mock_amazon, settings):
    settings.AMAZON_SPAPI_APP_SOURCE = "keybuzz"
    make_connection(app_source="external_test")
    assert "connections=0" in poll()[1]


def test_tenant_connection_and_limit_narrow_a_run(mock_amazon):
    a, b = make_connection(seller="A"), make_connection(seller="B")
    make_connection(seller="C")
    assert "connections=1" in poll("--tenant", str(a.tenant_id))[1]
    assert "connections=1" in poll("--connection", str(b.id))[1]
    assert "connections=1" in poll("--limit", "1")[1]
    assert "connections=0" in poll()[1]


def test_leased_connection_is_left_to_its_worker_until_the_lease_expires(mock_amazon):
    connection = make_connection(lease_owner="other-host:1", lease_expires_at=timezone.now() + timedelta(minutes=5))
    assert "connections=0" in poll()[1]
    expired = timezone.now() - timedelta(seconds=1)
    MarketplaceConnection.objects.filter(pk=connection.pk).update(lease_expires_at=expired)
    assert "connections=1" in poll()[1]


def test_json_summary(mock_amazon):
    make_connection()
    code, out = poll("--json")
    summary = json.loads(out)
    assert code == 0
    assert {k: summary[k] for k in ("connections", "fetched", "new_messages", "new_tickets", "failures")} == {
        "connections": 1,
        "fetched": 3,
        "new_messages": 3,
        "new_tickets": 3,
        "failures": 0,
    }


def test_without_mock_a_connection_without_mailbox_waits_without_error(settings):
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    connection = make_connection()
    code, out = poll()
    assert code == 0
    assert "connections=0 " in out
    connection.refresh_from_db()
    # Skipped, not failed: no error, no backoff, nothing fetched.
    assert (connection.last_error, connection.consecutive_failures, connection.next_poll_at) == ("", 0, None)
    assert ExternalMessage.objects.count() == 0


def test_configuration_error_exits_2_with_what_to_fix(settings):
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = "no.such.Source"
    with pytest.raises(CommandError, match=r"AMAZON_MESSAGE_SOURCE cannot be imported: no\.such\.Source"):
        call_command("poll_amazon", "--once")
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        call_command("poll_amazon", "--once", "--limit", "0")


# --- Access tokens ---------------------------------------------------------------------------------


@pytest.fixture
def token_source(settings):
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    settings.AMAZON_SPAPI_CLIENT_ID = "amzn1.application-oa2-client.test"
    settings.AMAZON_SPAPI_CLIENT_SECRET = "client-secret-poller-test"
    settings.AMAZON_SPAPI_APPLICATION_ID = "amzn1.sp.solution.test"
    TokenScriptedSource.script = {}
    TokenScriptedSource.calls = []
    connection = make_connection(seller="TOK")
    get_secret_store().write(connection.secret_ref, {"refresh_token": REFRESH_TOKEN})
    TokenScriptedSource.script = {"TOK": [raw_message(1)]}
    return connection


@responses.activate
def test_access_token_is_refreshed_once_and_cached(token_source):
    responses.post(LWA_URL, json={"access_token": "Atza|access-1", "token_type": "bearer", "expires_in": 3600})
    summary_1 = poll_run(force=True, tokens=None)
    assert summary_1.failures == 0
    assert TokenScriptedSource.calls == [("TOK", "Atza|access-1")]
    form = responses.calls[0].request.body
    assert "grant_type=refresh_token" in form and "refresh_token=Atzr%7Cpoller-test-refresh-token" in form

    from marketplaces.amazon.tokens import AccessTokenProvider

    tokens = AccessTokenProvider()
    poll_run(force=True, tokens=tokens)
    poll_run(force=True, tokens=tokens)  # loop mode: the same provider across runs
    assert len(responses.calls) == 2  # one more grant, then the cache


@responses.activate
def test_invalid_grant_makes_the_connection_needs_reauth(token_source, caplog):
    responses.post(
        LWA_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "The request has an invalid grant parameter"},
    )
    code, _ = poll()
    assert code == 1
    token_source.refresh_from_db()
    assert token_source.status == ConnectionStatus.NEEDS_REAUTH
    assert token_source.last_error.startswith("Token refresh failed: HTTP 400: invalid_grant")
    assert "reconnect" in token_source.last_error
    assert TokenScriptedSource.calls == []
    assert "Token refresh failed" in caplog.text
    assert REFRESH_TOKEN not in caplog.text and "client-secret-poller-test" not in caplog.text
    assert "connections=0" in poll("--force")[1]  # no longer polled


@pytest.mark.parametrize("failure", ["5xx", "timeout", "no_access_token"])
@responses.activate
def test_other_token_failures_are_retried_later(token_source, settings, failure, caplog):
    import requests

    settings.AMAZON_HTTP_RETRIES = 0
    if failure == "5xx":
        responses.post(LWA_URL, status=503, body="Service Unavailable")
    elif failure == "timeout":
        responses.post(LWA_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    else:
        responses.post(LWA_URL, json={"token_type": "bearer"})
    code, _ = poll()
    assert code == 1
    token_source.refresh_from_db()
    assert token_source.status == ConnectionStatus.CONNECTED
    assert token_source.last_error.startswith("Token refresh failed")
    assert token_source.consecutive_failures == 1 and token_source.next_poll_at > timezone.now()
    assert "Token refresh failed" in caplog.text

    responses.replace(responses.POST, LWA_URL, json={"access_token": "Atza|ok", "expires_in": 3600})
    assert poll("--force")[0] == 0
    token_source.refresh_from_db()
    assert (token_source.consecutive_failures, token_source.last_error) == (0, "")
    assert ExternalMessage.objects.count() == 1


@responses.activate
def test_missing_refresh_token_needs_reauth(token_source):
    get_secret_store().delete(token_source.secret_ref)
    assert poll()[0] == 1
    token_source.refresh_from_db()
    assert token_source.status == ConnectionStatus.NEEDS_REAUTH
    assert token_source.last_error == f"Token refresh failed: No credentials found: {token_source.secret_ref}"
    assert len(responses.calls) == 0


def test_missing_app_credentials_is_a_configuration_error(settings):
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    settings.AMAZON_SPAPI_CLIENT_ID = settings.AMAZON_SPAPI_CLIENT_SECRET = settings.AMAZON_SPAPI_APPLICATION_ID = ""
    code, _ = poll()
    assert code == 2
