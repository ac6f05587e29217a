"""/admin/dashboard/: the superadmin's figures and 30-day chart, per tenant on demand; nobody else."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from keybuzz.models import Role
from marketplaces.models import ConnectionStatus
from marketplaces.polling.records import poll_run_record
from operations.selectors import start_of_day
from tests.factories import make_member, make_tenant, make_user
from tests.operations.conftest import make_amazon_ticket, make_connection, make_message

pytestmark = pytest.mark.django_db
URL = "/admin/dashboard/"


@pytest.fixture
def data():
    now = timezone.now()
    acme, globex = make_tenant("acme"), make_tenant("globex")
    c = make_connection(acme, last_polled_at=now - timedelta(minutes=1))
    make_connection(acme, status=ConnectionStatus.ERROR)
    g = make_connection(globex, last_polled_at=now - timedelta(minutes=2))
    for _ in range(3):
        make_message(c, created_at=now)
    make_message(g, created_at=now)
    make_message(g, created_at=start_of_day(now) - timedelta(days=3, hours=-1))
    make_amazon_ticket(c, created_at=now)
    make_amazon_ticket(g, created_at=start_of_day(now) - timedelta(days=3, hours=-1))
    poll_run_record(
        worker="web1:42:abc",
        started_at=now - timedelta(seconds=70),
        finished_at=now - timedelta(seconds=60),
        connections=2,
        fetched=4,
        new_messages=4,
        new_tickets=1,
        quarantined=0,
        failures=0,
        seconds=1.25,
    )
    return {"acme": acme, "globex": globex}


def card(page: str, key: str) -> str:
    """The text of one figure card, tags stripped."""
    match = re.search(rf'data-figure="{key}">(.*?)</div>\s*</div>', page, re.S)
    assert match, f"no card {key}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_superadmin_sees_the_figures_and_the_chart(superadmin_client, data, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):  # session + user + tenants + figures + 2 series + runs
        response = superadmin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Operations dashboard" in page and "All tenants" in page
    assert card(page, "active_connections") == "Active Amazon connections 2 of 3 Amazon connections"
    assert card(page, "messages_today").startswith("Messages polled today 4")
    assert card(page, "tickets_today").startswith("Amazon tickets today 1")
    assert card(page, "connections_error") == "Connections in ERROR 1"
    assert 'class="ops-card bad" data-figure="connections_error"' in page
    assert re.fullmatch(
        r"Last poll run 1 min( \d+ s)? ago took 1\.25 s, 2 connections, 0 failures", card(page, "last_poll_run")
    )
    assert card(page, "poller") == "Poller OK"

    # The chart: 30 days x 2 series of bars, each with its figure in a title.
    chart = page[page.index('id="ops-chart"') :]
    svg = chart[: chart.index("</svg>")]
    assert svg.count("<rect ") == 60
    today = f"{timezone.now():%Y-%m-%d}"
    assert f"<title>{today}: 4 messages</title>" in svg
    assert f"<title>{today}: 1 tickets</title>" in svg
    three_days_ago = f"{start_of_day(timezone.now()) - timedelta(days=3):%Y-%m-%d}"
    assert f"<title>{three_days_ago}: 1 messages</title>" in svg
    assert "Messages (5)" in page and "Tickets (2)" in page
    assert "web1:42:abc" in page  # the recent runs table
    # Server-side only: no script, nothing from another host.
    assert '<script src="http' not in page and "cdn" not in page.lower()


def test_per_tenant(superadmin_client, data):
    page = superadmin_client.get(URL, {"tenant": "globex"}).content.decode()
    assert "Tenant globex" in page
    assert '<option value="globex" selected>' in page
    assert card(page, "active_connections") == "Active Amazon connections 1 of 1 Amazon connections"
    assert card(page, "messages_today").startswith("Messages polled today 1")
    assert card(page, "connections_error") == "Connections in ERROR 0"
    assert "Messages (2)" in page and "Tickets (1)" in page

    acme = superadmin_client.get(URL, {"tenant": "acme"}).content.decode()
    assert card(acme, "messages_today").startswith("Messages polled today 3")


def test_unknown_tenant(superadmin_client, data):
    response = superadmin_client.get(URL, {"tenant": "<nope>"})
    assert response.status_code == 404
    page = response.content.decode()
    assert "No tenant with the slug “&lt;nope&gt;”." in page
    assert "<nope>" not in page


def test_empty_database_renders(superadmin_client):
    page = superadmin_client.get(URL).content.decode()
    assert card(page, "last_poll_run").startswith("Last poll run never")
    assert "No poll run recorded yet" in page


def test_linked_from_the_admin_index(superadmin_client):
    page = superadmin_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in page


@pytest.mark.parametrize("kind", ["anonymous", "tenant_owner", "staff_not_superuser"])
def test_others_are_refused(client, data, kind):
    if kind == "tenant_owner":
        client.force_login(make_member(data["acme"], role=Role.OWNER).user)
    elif kind == "staff_not_superuser":
        client.force_login(make_user(is_staff=True))
    response = client.get(URL, {"tenant": "acme"})
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/dashboard/")


def test_poll_runs_in_the_admin(superadmin_client, data):
    from django.test import Client

    from marketplaces.models import PollRun

    listing = superadmin_client.get("/admin/marketplaces/pollrun/", {"q": "web1"})
    assert listing.status_code == 200 and "web1:42:abc" in listing.content.decode()
    run = PollRun.objects.get()
    page = superadmin_client.get(f"/admin/marketplaces/pollrun/{run.pk}/change/").content.decode()
    assert "web1:42:abc" in page and 'name="worker"' not in page  # read-only
    assert Client().get("/admin/marketplaces/pollrun/").status_code == 302  # anonymous
