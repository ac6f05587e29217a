"""The Amazon consent in a real headless Chromium, against the local fake Amazon: the web app's
page calls start with credentials, the browser follows authUrl and confirms, and lands connected;
the same authUrl opened in another browser is refused ("started in another browser")."""

from __future__ import annotations

import pytest
from django.db import connections

from marketplaces.models import ConnectionStatus, MarketplaceConnection, OAuthState
from tests.factories import api_client, make_member
from tests.marketplaces.test_mock_flow import mock_routes, no_app_configured  # noqa: F401
from tests.operations.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

sync_api = pytest.importorskip("playwright.sync_api", reason="the PyPI package playwright is not installed")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
    ),
    pytest.mark.django_db(transaction=True),
]

START = """async (jwt) => {
  const answer = await fetch("/api/v1/marketplaces/amazon/oauth/start", {
    method: "POST", credentials: "include",
    headers: {"Authorization": "Bearer " + jwt, "Content-Type": "application/json"}, body: "{}"});
  return (await answer.json()).authUrl;
}"""


@pytest.fixture
def browsers(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM reads are still
    # plain synchronous code (Django's documented escape hatch for such test drivers).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield [chromium.new_context(), chromium.new_context()]  # two browsers: separate cookies
        finally:
            connections.close_all()  # the test's reads ran in the loop's context: their connection too
            chromium.close()


@pytest.mark.usefixtures("mock_routes", "no_app_configured")
def test_the_seller_connects_in_the_browser_that_started_and_nowhere_else(live_server, browsers):
    owner = make_member()
    jwt = api_client(owner)._credentials["HTTP_AUTHORIZATION"].split()[1]
    sellers_browser, someone_else = (context.new_page() for context in browsers)

    sellers_browser.goto(f"{live_server.url}/health")  # the web app's page, on the API's origin here
    auth_url = sellers_browser.evaluate(START, jwt)
    assert auth_url.startswith(f"{live_server.url}/api/v1/marketplaces/amazon/mock/apps/authorize/consent?")

    # The link forwarded to another browser: refused, and the state is not spent.
    someone_else.goto(auth_url)
    someone_else.get_by_role("button", name="Confirm", exact=True).click()
    sync_api.expect(someone_else.locator("body")).to_contain_text("started in another browser")
    assert not MarketplaceConnection.objects.exists()
    assert OAuthState.objects.get().used_at is None

    sellers_browser.goto(auth_url)
    sellers_browser.get_by_role("button", name="Confirm", exact=True).click()
    sync_api.expect(sellers_browser.locator("body")).to_contain_text("Amazon connected")
    connection = MarketplaceConnection.objects.get()
    assert (connection.tenant_id, connection.status) == (owner.tenant_id, ConnectionStatus.CONNECTED)
