"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright): log into
the admin through its form, open the dashboard, read the figures and the chart, switch tenant, and
save a screenshot to test-artifacts/dashboard.png.

Needs the apt package `chromium` (/usr/bin/chromium) and the PyPI package `playwright` (no
`playwright install`: the browser is Debian's)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from marketplaces.models import ConnectionStatus
from marketplaces.polling.records import poll_run_record
from operations.selectors import start_of_day
from tests.factories import make_tenant
from tests.operations.conftest import SUPERADMIN_PASSWORD, make_amazon_ticket, make_connection, make_message

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(settings.BASE_DIR) / "test-artifacts" / "dashboard.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="the PyPI package playwright is not installed")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def activity(superadmin):
    """A month of traffic for two tenants, a connection in ERROR and a recent poll run."""
    now = timezone.now()
    midnight = start_of_day(now)
    acme, globex = make_tenant("acme"), make_tenant("globex")
    c = make_connection(acme, last_polled_at=now - timedelta(minutes=2))
    make_connection(acme, status=ConnectionStatus.ERROR, last_error="Token refresh failed: invalid_grant")
    g = make_connection(globex, last_polled_at=now - timedelta(minutes=1))
    for day in range(30):
        at = midnight - timedelta(days=day) + timedelta(hours=10)
        at = min(at, now)
        for _ in range((day * 7) % 5 + 1):
            make_message(c, created_at=at)
        if day % 2 == 0:
            make_amazon_ticket(c, created_at=at)
        if day % 3 == 0:
            make_message(g, created_at=at)
            make_amazon_ticket(g, created_at=at)
    poll_run_record(
        worker="web1:4242:c0ffee",
        started_at=now - timedelta(seconds=63),
        finished_at=now - timedelta(seconds=60),
        connections=2,
        fetched=6,
        new_messages=6,
        new_tickets=2,
        quarantined=0,
        failures=0,
        seconds=3.2,
    )
    return {"acme": acme, "globex": globex}


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            browser.close()


def test_superadmin_reads_the_dashboard_in_a_browser(live_server, activity, page):
    expect = sync_api.expect
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "root")
    page.fill("#id_password", SUPERADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.click("#ops-dashboard-link a")  # the link on the admin's home page
    page.wait_for_url(f"{live_server.url}/admin/dashboard/")
    expect(page.locator("h1")).to_have_text("Operations dashboard")
    expect(page.locator("[data-figure=active_connections] .value")).to_have_text("2")
    expect(page.locator("[data-figure=connections_error] .value")).to_have_text("1")
    expect(page.locator("[data-figure=messages_today] .value")).to_have_text("2")  # acme 1 + globex 1
    expect(page.locator("[data-figure=last_poll_run] .value")).to_have_text(re.compile(r"^1 min( \d+ s)? ago$"))
    expect(page.locator("[data-figure=poller] .value")).to_have_text("OK")

    chart = page.locator("#ops-chart svg")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 200
    expect(chart.locator("rect")).to_have_count(60)
    tallest = max(chart.locator("rect.messages").evaluate_all("els => els.map(e => e.getBBox().height)"))
    assert tallest > 100  # bars are drawn, not flat
    expect(page.locator(".ops-legend")).to_contain_text("Messages (")
    expect(page.locator("#ops-poll-runs")).to_contain_text("web1:4242:c0ffee")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    # Per tenant, through the selector.
    page.select_option("#ops-tenant", "globex")
    page.click("#ops-tenant-form input[type=submit]")
    page.wait_for_url("**/admin/dashboard/?tenant=globex")
    expect(page.locator("h2").first).to_have_text("Tenant globex")
    expect(page.locator("[data-figure=active_connections] .value")).to_have_text("1")
    expect(page.locator("[data-figure=connections_error] .value")).to_have_text("0")
    page.screenshot(path=str(SCREENSHOT.with_name("dashboard-globex.png")), full_page=True)
