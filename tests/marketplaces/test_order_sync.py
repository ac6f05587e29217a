"""Order context: `sync_orders` fetches with SP-API getOrder (faked at the HTTP boundary in Amazon's
wire format, real LWA token provider and client) the orders of open Amazon tickets, and the tickets
show them; an order Amazon does not know yet is retried with backoff; a missing role stops the calls
for that connection until it reconnects."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.management import call_command
from django.db import connection as db_connection
from django.urls import reverse
from django.utils import timezone

from marketplaces.amazon.spapi import Order
from marketplaces.amazon.spapi_mock import MockSpApiClient
from marketplaces.models import AmazonOrder, MarketplaceConnection, SpApiDailyUsage
from marketplaces.orders.sync import orders_sync_due
from tests.factories import api_client, make_member, make_tenant
from tests.marketplaces.conftest import ACCESS_TOKEN, AMAZON_OAUTH
from tests.marketplaces.spapi_fakes import EU, NA, error_body, lwa_tokens, order_body, order_url, spapi_connection
from tests.tickets.factories import make_ticket
from tickets.models import Ticket, TicketStatus

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]

ORDER = "302-1234567-7654321"


@pytest.fixture(autouse=True)
def quick(settings, monkeypatch):
    settings.AMAZON_SPAPI_ENDPOINT = ""
    settings.AMAZON_ORDER_REFRESH_HOURS = 6
    settings.AMAZON_ORDER_RETRY_BASE_SECONDS = 600
    monkeypatch.setattr("marketplaces.amazon.spapi.time.sleep", lambda seconds: None)  # 429 backoff


@pytest.fixture
def amazon():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        lwa_tokens(rsps)
        yield rsps


def spapi_calls(rsps) -> list:
    return [call for call in rsps.calls if "sellingpartnerapi" in call.request.url]


def amazon_ticket(connection, order_id: str = ORDER, **fields):
    return make_ticket(connection.tenant, connection_id=connection.id, order_id=order_id, **fields)


def test_an_open_tickets_order_is_fetched_and_shown(amazon):
    connection = spapi_connection()
    ticket, same_order = amazon_ticket(connection), amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), json=order_body(ORDER))
    client = api_client(make_member(connection.tenant))

    summary = orders_sync_due()

    assert (summary.discovered, summary.claimed, summary.fetched) == (1, 1, 1)
    [call] = spapi_calls(amazon)
    assert parse_qs(urlsplit(call.request.url).query) == {"includedData": ["FULFILLMENT,PACKAGES"]}
    assert call.request.headers["x-amz-access-token"] == ACCESS_TOKEN
    order = client.get(f"/api/v1/tickets/{ticket.id}/").json()["order"]
    assert order | {"fetchedAt": None} == {
        "orderId": ORDER,
        "status": "SHIPPED",
        "purchaseDate": "2026-11-28T09:12:44Z",
        "latestShipDate": "2026-11-30T23:59:59Z",
        "latestDeliveryDate": "2026-12-04T23:59:59Z",
        "marketplaceId": "A1PA6795UKMFR9",
        "fulfillmentChannel": "MERCHANT",
        "items": [
            {
                "asin": "B0C7K2M9QX",
                "sku": "KB-WAL-DE",
                "title": "Bamboo Wireless Keyboard - Walnut, DE Layout",
                "quantity": 2,
                "price": "49.99",
                "currency": "EUR",
            }
        ],
        "packages": [{"carrier": "DHL", "trackingNumber": "00340434161234567890", "status": "IN_TRANSIT"}],
        "fetchedAt": None,
    }
    assert order["fetchedAt"]
    rows = {row["id"]: row for row in client.get("/api/v1/tickets/").json()["results"]}
    assert rows[ticket.id]["order_status"] == rows[same_order.id]["order_status"] == "SHIPPED"


def test_a_fresh_context_is_not_fetched_again_until_it_is_old(amazon):
    connection = spapi_connection()
    amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), json=order_body(ORDER, status="UNSHIPPED"))
    now = timezone.now()
    orders_sync_due(now=now)

    assert orders_sync_due(now=now + timedelta(hours=5)).claimed == 0
    amazon.replace(responses.GET, order_url(EU, ORDER), json=order_body(ORDER, status="SHIPPED"))
    later = orders_sync_due(now=now + timedelta(hours=6, minutes=1))

    assert later.fetched == 1
    assert len(spapi_calls(amazon)) == 2
    assert AmazonOrder.objects.get().data["status"] == "SHIPPED"


def test_orders_of_closed_or_resolved_tickets_and_tickets_without_order_are_not_fetched(amazon):
    connection = spapi_connection()
    amazon_ticket(connection, status=TicketStatus.RESOLVED)
    amazon_ticket(connection, order_id="303-0000000-0000001", status=TicketStatus.CLOSED)
    amazon_ticket(connection, order_id="")

    assert orders_sync_due().claimed == 0
    assert spapi_calls(amazon) == []


def test_an_order_amazon_does_not_know_yet_is_retried_with_backoff(amazon):
    connection = spapi_connection()
    ticket = amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), status=404, json=error_body("NotFound", "Order not found."))
    now = timezone.now()

    first = orders_sync_due(now=now)
    soon = orders_sync_due(now=now + timedelta(minutes=9))
    amazon.replace(responses.GET, order_url(EU, ORDER), json=order_body(ORDER))
    second = orders_sync_due(now=now + timedelta(minutes=11))

    assert (first.not_found, soon.claimed, second.fetched) == (1, 0, 1)
    assert len(spapi_calls(amazon)) == 2
    ticket.refresh_from_db()
    assert ticket.order_context["status"] == "SHIPPED"


def test_a_missing_role_is_recorded_once_and_stops_the_calls_until_reconnection(amazon):
    connection = spapi_connection()
    other = spapi_connection()
    amazon_ticket(connection)
    amazon_ticket(connection, order_id="302-0000000-0000002")
    amazon_ticket(other, order_id="302-0000000-0000003")
    amazon.get(
        order_url(EU, ORDER), status=403, json=error_body("Unauthorized", "Access to requested resource is denied.")
    )
    amazon.get(order_url(EU, "302-0000000-0000002"), json=order_body("302-0000000-0000002"))
    amazon.get(order_url(EU, "302-0000000-0000003"), json=order_body("302-0000000-0000003"))

    first = orders_sync_due()
    again = orders_sync_due(now=timezone.now() + timedelta(days=1))

    connection.refresh_from_db()
    assert first.forbidden == 1 and again.forbidden == 0
    assert connection.spapi_forbidden_at is not None
    assert "Access to requested resource is denied" in connection.spapi_error
    status = api_client(make_member(connection.tenant)).get("/api/v1/marketplaces/amazon/status").json()
    shown = next(c for c in status["connections"] if c["id"] == str(connection.id))
    assert shown["spapiError"] == connection.spapi_error  # the seller sees why and what to do
    called = [urlsplit(c.request.url).path.rsplit("/", 1)[1] for c in spapi_calls(amazon)]
    assert called.count(ORDER) == 1  # once, then never again for this connection
    assert "302-0000000-0000003" in called  # the other connection goes on
    assert called.count("302-0000000-0000002") <= 1  # not called after the 403 of the same connection

    MarketplaceConnection.objects.filter(pk=connection.pk).update(spapi_forbidden_at=None, spapi_error="")  # reconnect
    amazon.replace(responses.GET, order_url(EU, ORDER), json=order_body(ORDER))
    assert orders_sync_due(now=timezone.now() + timedelta(days=2)).fetched >= 1


def test_throttling_until_the_retry_budget_is_spent_is_retried_on_a_later_run_and_counted(amazon, settings):
    connection = spapi_connection()
    amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), status=429, json=error_body("QuotaExceeded", "You exceeded your quota."))

    summary = orders_sync_due()

    assert (summary.retrying, summary.fetched) == (1, 0)
    assert len(spapi_calls(amazon)) == 4  # the first call and 3 retries, then it gives up for this run
    usage = SpApiDailyUsage.objects.get()
    assert (usage.calls, usage.throttled, usage.failures) == (1, 1, 0)
    order = AmazonOrder.objects.get()
    assert order.next_fetch_at > timezone.now() and "quota" in order.last_error.lower()


def test_each_tenant_sees_its_own_connections_order(amazon):
    mine = spapi_connection(region="EU")
    theirs = spapi_connection(make_tenant(), region="NA")
    ticket = amazon_ticket(mine)
    their_ticket = amazon_ticket(theirs)
    amazon.get(order_url(EU, ORDER), json=order_body(ORDER, title="Mine"))
    amazon.get(order_url(NA, ORDER), json=order_body(ORDER, title="Theirs", marketplace_id="ATVPDKIKX0DER"))

    orders_sync_due()

    client = api_client(make_member(mine.tenant))
    assert client.get(f"/api/v1/tickets/{ticket.id}/").json()["order"]["items"][0]["title"] == "Mine"
    assert client.get(f"/api/v1/tickets/{their_ticket.id}/").status_code == 404
    their_ticket.refresh_from_db()
    assert their_ticket.order_context["items"][0]["title"] == "Theirs"


def test_the_command_prints_its_summary_and_fails_when_amazon_does(amazon):
    connection = spapi_connection()
    amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), status=503, json=error_body("ServiceUnavailable", "Try later."))
    out = io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("sync_orders", "--once", "--json", stdout=out)

    assert exited.value.code == 1
    assert json.loads(out.getvalue().strip().splitlines()[-1])["retrying"] == 1


def test_the_admin_and_the_dashboard_show_orders_and_spapi_usage(amazon, client, django_user_model):
    connection = spapi_connection()
    ticket = amazon_ticket(connection)
    amazon.get(order_url(EU, ORDER), json=order_body(ORDER))
    orders_sync_due()
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)

    page = client.get(reverse("admin:tickets_ticket_change", args=[ticket.id])).content.decode()
    dashboard = client.get(reverse("ops-dashboard")).content.decode()

    assert "SHIPPED" in page and "00340434161234567890" in page
    assert 'id="ops-spapi-usage"' in dashboard
    day = SpApiDailyUsage.objects.get()
    assert f"<td>{day.day:%Y-%m-%d}</td><td>1</td><td>0</td><td>0</td>" in dashboard


def test_with_the_mock_amazon_the_demo_shows_order_context(settings):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 1
    connection = spapi_connection()
    call_command("poll_amazon", "--once", stdout=io.StringIO())
    assert Ticket.objects.filter(connection_id=connection.id).exclude(order_id="").exists()

    summary = orders_sync_due()

    assert summary.fetched >= 1 and summary.retrying == 0
    ticket = Ticket.objects.filter(connection_id=connection.id).exclude(order_id="").first()
    assert ticket.order_context["status"] == "SHIPPED"
    assert ticket.order_context["items"][0]["asin"].startswith("B0")


def test_a_run_leases_a_few_orders_at_a_time_so_a_second_host_gets_the_rest(settings):
    """A worker does not lease its whole run up front: another worker started meanwhile (another
    host) finds the orders the first has not reached yet, and no order is fetched twice."""
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_ORDER_CLAIM_BATCH = 3
    connection = spapi_connection()
    orders = [f"302-0000000-{n:07d}" for n in range(10)]
    for order_id in orders:
        amazon_ticket(connection, order_id=order_id)
    fetched: list[tuple[str, str]] = []
    second: list = []

    class Recording(MockSpApiClient):
        def __init__(self, host: str) -> None:
            self.host = host

        def get_order(self, order_id: str) -> Order:
            if not second:  # while the first host fetches its first order, a second host's run starts
                second.append(None)
                second[0] = orders_sync_due(worker="host-b", client_for=lambda c, p: Recording("host-b"))
            fetched.append((self.host, order_id))
            return Order(order_id, "SHIPPED", "", "", "", "A1PA6795UKMFR9", "MERCHANT")

    first = orders_sync_due(worker="host-a", client_for=lambda c, p: Recording("host-a"))

    assert (first.claimed, second[0].claimed) == (3, 7)  # its first lease; host-b took the rest meanwhile
    assert sorted(order for _, order in fetched) == orders  # each once
    assert Ticket.objects.filter(order_context__status="SHIPPED").count() == 10


def test_a_run_fetches_at_most_its_limit_in_several_leases(settings):
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_ORDER_CLAIM_BATCH = 2
    connection = spapi_connection()
    for n in range(7):
        amazon_ticket(connection, order_id=f"302-0000000-{n:07d}")

    def run() -> int:
        return orders_sync_due(limit=5, client_for=lambda c, p: MockSpApiClient()).claimed

    assert (run(), run(), run()) == (5, 2, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_fetch_each_order_once(requires_postgres, settings):
    """Four workers at once on PostgreSQL (SKIP LOCKED leases): every order is fetched exactly once."""
    settings.AMAZON_USE_MOCK = False
    connection = spapi_connection()
    orders = [f"302-0000000-{n:07d}" for n in range(60)]
    for order_id in orders:
        amazon_ticket(connection, order_id=order_id)
    fetched: list[str] = []
    lock = threading.Lock()

    class Recording(MockSpApiClient):
        def get_order(self, order_id: str) -> Order:
            with lock:
                fetched.append(order_id)
            return Order(order_id, "SHIPPED", "", "", "", "A1PA6795UKMFR9", "MERCHANT")

    start = threading.Barrier(4)

    def worker(n: int) -> None:
        start.wait()
        try:
            while orders_sync_due(worker=f"w{n}", limit=7, client_for=lambda c, p: Recording()).claimed:
                pass
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(fetched) == orders  # each once, none missed
    assert Ticket.objects.filter(order_context__status="SHIPPED").count() == 60
