"""The operators' figures (operations.selectors) on built data: today's boundary, the
other SP-API app, a stalled poller, per tenant, and a constant number of queries."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplaces.models import ConnectionStatus, PollCounter, PollRun
from marketplaces.polling.records import poll_run_record
from operations.selectors import daily_activity, ops_figures, poll_counters, start_of_day
from tests.factories import make_tenant
from tests.operations.conftest import make_amazon_ticket, make_connection, make_message, make_quarantined
from tests.tickets.factories import add_message, make_ticket
from tickets.models import DeliveryStatus, Direction, Ticket
from tickets.selectors import ticket_stats

pytestmark = pytest.mark.django_db


def record_run(*, finished_at, seconds=1.5, connections=2, failures=0, fetched=3, new_messages=3):
    return poll_run_record(
        worker="host:1:abc",
        started_at=finished_at - timedelta(seconds=seconds),
        finished_at=finished_at,
        connections=connections,
        fetched=fetched,
        new_messages=new_messages,
        new_tickets=new_messages,
        quarantined=0,
        failures=failures,
        seconds=seconds,
    )


@pytest.fixture
def world(settings):
    """Two tenants with connections in every state and rows on both sides of midnight."""
    settings.AMAZON_SPAPI_APP_SOURCE = "external_test"
    now = timezone.now()
    midnight = start_of_day(now)
    acme, globex = make_tenant("acme"), make_tenant("globex")
    c1 = make_connection(acme, last_polled_at=now - timedelta(minutes=2), connected_at=now - timedelta(days=9))
    # Never polled: its age counts from when it was connected.
    make_connection(acme, connected_at=now - timedelta(minutes=10))
    # Made with the other SP-API app: reads NEEDS_REAUTH, is not polled, so its old poll is not "stalled".
    make_connection(acme, app_source="keybuzz", last_polled_at=now - timedelta(days=5))
    make_connection(acme, status=ConnectionStatus.ERROR, last_error="Token refresh failed: invalid_grant")
    make_connection(acme, status=ConnectionStatus.NEEDS_REAUTH)
    make_connection(acme, status=ConnectionStatus.DISCONNECTED)
    g1 = make_connection(globex, last_polled_at=now - timedelta(minutes=1))
    make_connection(globex, status=ConnectionStatus.PENDING)

    for at in (midnight, now):  # today, the first one exactly at midnight
        make_message(c1, created_at=at)
    make_message(c1, created_at=midnight - timedelta(seconds=1))  # yesterday, by one second
    make_message(g1, created_at=now)
    make_message(g1, created_at=now - timedelta(days=3))

    make_amazon_ticket(c1, created_at=midnight)
    make_amazon_ticket(c1, created_at=midnight - timedelta(seconds=1))
    make_amazon_ticket(g1, created_at=now)

    make_quarantined(c1, created_at=now)
    make_quarantined(c1, created_at=midnight - timedelta(seconds=1))

    # Overdue: buyer waiting 30 h, due after 24 h. Not overdue: answered, or not due yet.
    overdue = make_ticket(acme, at=now - timedelta(hours=30))
    answered = make_ticket(acme, at=now - timedelta(hours=30))
    add_message(answered, direction=Direction.OUTBOUND, body="Shipped today", at=now - timedelta(hours=29))
    fresh = make_ticket(globex, at=now - timedelta(hours=1))
    reply = add_message(fresh, direction=Direction.OUTBOUND, body="On it", delivery_status=DeliveryStatus.QUEUED)
    add_message(
        overdue,
        direction=Direction.OUTBOUND,
        body="x",
        at=now - timedelta(hours=29),
        delivery_status=DeliveryStatus.FAILED,
    )  # a failed reply answers nobody
    # These three are not today's Amazon tickets for the purpose of the count.
    Ticket.objects.filter(pk__in=[overdue.pk, answered.pk, fresh.pk]).update(created_at=now - timedelta(days=2))

    record_run(finished_at=now - timedelta(minutes=3), seconds=2.0, failures=1)
    record_run(finished_at=now - timedelta(hours=25))  # outside the 24-hour window
    return {"now": now, "acme": acme, "globex": globex, "reply": reply}


def test_figures_for_every_tenant(world):
    now = world["now"]
    f = ops_figures(now=now)

    assert f.tenant is None
    assert f.active_connections == 3  # acme's two on the current app + globex's
    assert f.connections_by_status == {"CONNECTED": 3, "NEEDS_REAUTH": 2, "ERROR": 1, "DISCONNECTED": 1, "PENDING": 1}
    assert (f.connections_error, f.connections_needs_reauth) == (1, 2)
    assert f.oldest_poll_age_seconds == 10 * 60  # the never-polled one, not the other app's
    assert f.messages_today == 3
    assert f.tickets_today == 2
    assert (f.quarantined_total, f.quarantined_today) == (2, 1)
    assert f.overdue_tickets == 1
    assert f.replies_by_status == {"QUEUED": 1, "SENT": 1, "FAILED": 1}
    assert f.oldest_queued_reply_age_seconds is not None and f.oldest_queued_reply_age_seconds < 60
    assert f.last_poll_run.failures == 1 and f.last_poll_run.age_seconds == 180
    assert f.last_poll_run.seconds == 2.0
    assert (f.poll_runs_24h, f.poll_failures_24h) == (1, 1)
    assert f.poller_stalled is False


def test_figures_per_tenant(world):
    now = world["now"]
    acme = ops_figures(tenant=world["acme"], now=now)
    globex = ops_figures(tenant=world["globex"], now=now)

    assert acme.tenant == "acme"
    assert (acme.active_connections, acme.connections_error, acme.connections_needs_reauth) == (2, 1, 2)
    assert (globex.active_connections, globex.connections_error, globex.connections_needs_reauth) == (1, 0, 0)
    assert globex.connections_by_status["PENDING"] == 1
    assert (acme.messages_today, globex.messages_today) == (2, 1)
    assert (acme.tickets_today, globex.tickets_today) == (1, 1)
    assert (acme.quarantined_total, globex.quarantined_total) == (2, 0)
    assert acme.oldest_poll_age_seconds == 10 * 60
    assert globex.oldest_poll_age_seconds == 60
    assert (acme.replies_by_status["QUEUED"], globex.replies_by_status["QUEUED"]) == (0, 1)
    # The agents' own figure, reused rather than redefined.
    for tenant, figures in ((world["acme"], acme), (world["globex"], globex)):
        assert figures.overdue_tickets == ticket_stats(tenant=tenant, user_id=0, now=now).overdue
    # The poller's runs are global.
    assert acme.last_poll_run == globex.last_poll_run


def test_a_stalled_poller_shows(settings):
    settings.METRICS_POLL_STALE_SECONDS = 900
    now = timezone.now()
    tenant = make_tenant()
    make_connection(tenant, last_polled_at=now - timedelta(hours=2), connected_at=now - timedelta(days=3))
    make_connection(tenant, connected_at=now - timedelta(hours=3))  # connected, never polled since

    f = ops_figures(now=now)
    assert f.oldest_poll_age_seconds == 3 * 3600
    assert f.last_poll_run is None
    assert f.poller_stalled is True

    # The poller runs again and polls both: no longer stalled.
    from marketplaces.models import MarketplaceConnection

    MarketplaceConnection.objects.update(last_polled_at=now - timedelta(seconds=30))
    record_run(finished_at=now - timedelta(seconds=30))
    f = ops_figures(now=now)
    assert f.oldest_poll_age_seconds == 30 and f.poller_stalled is False

    # The cron stops: the last run ages past the limit even with no connection left to poll.
    MarketplaceConnection.objects.update(status=ConnectionStatus.DISCONNECTED)
    f = ops_figures(now=now + timedelta(minutes=20))
    assert f.oldest_poll_age_seconds is None and f.active_connections == 0
    assert f.last_poll_run.age_seconds == 20 * 60 + 30 and f.poller_stalled is True


def test_nothing_at_all():
    f = ops_figures()
    assert f.active_connections == 0 and f.oldest_poll_age_seconds is None and f.last_poll_run is None
    assert f.messages_today == f.tickets_today == f.overdue_tickets == f.quarantined_total == 0
    assert f.poller_stalled is False


def test_query_count_does_not_grow(world):
    with CaptureQueriesContext(db_connection) as before:
        ops_figures()
    for _ in range(5):
        tenant = make_tenant()
        c = make_connection(tenant, last_polled_at=timezone.now())
        make_message(c, created_at=timezone.now())
        make_ticket(tenant, at=timezone.now() - timedelta(hours=30))
    with CaptureQueriesContext(db_connection) as after:
        ops_figures()
    assert len(after) == len(before) <= 9


def test_daily_activity_groups_by_day(world):
    now = world["now"]
    with CaptureQueriesContext(db_connection) as queries:
        days = daily_activity(now=now, days=30)
    assert len(queries) == 2  # one GROUP BY per series
    assert len(days) == 30
    today, yesterday = start_of_day(now).date(), (start_of_day(now) - timedelta(days=1)).date()
    assert days[-1].day == today and days[0].day == today - timedelta(days=29)
    by_day = {d.day: d for d in days}
    assert (by_day[today].messages, by_day[today].tickets) == (3, 2)
    # Yesterday: the message and the ticket one second before midnight.
    assert by_day[yesterday].messages == 1
    assert by_day[yesterday].tickets == 1
    three_days_ago = today - timedelta(days=3)
    assert by_day[three_days_ago].messages == 1
    assert sum(d.tickets for d in days) == 3 + 3  # the three Amazon tickets + the three made 2 days ago

    acme = {d.day: d for d in daily_activity(tenant=world["acme"], now=now)}
    assert (acme[today].messages, acme[today].tickets, acme[three_days_ago].messages) == (2, 1, 0)


def test_daily_activity_leaves_out_older_days():
    now = timezone.now()
    c = make_connection(make_tenant())
    make_message(c, created_at=start_of_day(now) - timedelta(days=30))  # day 31: out
    make_message(c, created_at=start_of_day(now) - timedelta(days=29))  # day 30: in
    days = daily_activity(now=now, days=30)
    assert sum(d.messages for d in days) == 1 and days[0].messages == 1


# --- What the poller records -------------------------------------------------------------------


def test_each_poll_run_is_recorded_with_counters(settings):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_MOCK_MESSAGES_PER_POLL = 3
    settings.AMAZON_POLL_WORKERS = 1
    make_connection(make_tenant(), connected_at=timezone.now())

    call_command("poll_amazon", "--once", stdout=io.StringIO())
    call_command("poll_amazon", "--once", "--force", stdout=io.StringIO())  # nothing new the second time

    first, second = PollRun.objects.order_by("id")
    assert (first.connections, first.fetched, first.new_messages, first.new_tickets, first.failures) == (1, 3, 3, 3, 0)
    assert (second.connections, second.new_messages) == (1, 0)
    assert first.seconds >= 0 and first.finished_at >= first.started_at and first.worker
    counters = poll_counters()
    assert counters["runs"] == 2 and counters["connections"] == 2
    assert counters["new_messages"] == 3 and counters["fetched"] == 3 and counters["failures"] == 0
    assert counters["seconds_le_600"] == 2 and counters["seconds_sum"] == pytest.approx(first.seconds + second.seconds)

    f = ops_figures()
    assert f.last_poll_run.new_messages == 0 and f.poll_runs_24h == 2
    assert f.messages_today == 3 and f.tickets_today == 3 and f.oldest_poll_age_seconds < 60


def test_old_runs_are_pruned_but_counters_keep_counting():
    now = timezone.now()
    record_run(finished_at=now - timedelta(days=40), seconds=20, failures=2)
    record_run(finished_at=now, seconds=0.5)
    assert PollRun.objects.count() == 1
    counters = poll_counters()
    assert counters["runs"] == 2 and counters["failures"] == 2
    assert counters["seconds_le_1"] == 1 and counters["seconds_le_30"] == 2
    assert PollCounter.objects.filter(name="runs").count() == 1
