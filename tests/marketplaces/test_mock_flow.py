"""The local fake Amazon (DEBUG + AMAZON_USE_MOCK): click through consent to CONNECTED; and it can
never be reached with DEBUG off."""

from __future__ import annotations

import importlib
import re
from urllib.parse import urlsplit

import pytest
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import clear_url_caches

from keybuzz.secrets import get_secret_store
from marketplaces import mock_views
from marketplaces.models import ConnectionStatus, MarketplaceConnection
from tests.marketplaces.conftest import AMAZON_OAUTH, START_URL, STATUS_URL

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]
MOCK_CONSENT = "/api/v1/marketplaces/amazon/mock/apps/authorize/consent"
MOCK_TOKEN = "/api/v1/marketplaces/amazon/mock/auth/o2/token"


def reload_urls() -> None:
    import keybuzz.urls
    import marketplaces.urls

    importlib.reload(marketplaces.urls)
    importlib.reload(keybuzz.urls)
    clear_url_caches()


@pytest.fixture
def mock_routes(settings):
    """Routes as `runserver` builds them when started with DEBUG and AMAZON_USE_MOCK on."""
    settings.DEBUG = True
    settings.AMAZON_USE_MOCK = True
    reload_urls()
    yield settings
    settings.DEBUG = False
    settings.AMAZON_USE_MOCK = False
    reload_urls()


@pytest.fixture
def no_app_configured(settings):
    settings.AMAZON_SPAPI_CLIENT_ID = settings.AMAZON_SPAPI_CLIENT_SECRET = settings.AMAZON_SPAPI_APPLICATION_ID = ""


def forward_to_django(fake_lwa, url: str) -> None:
    """The callback's LWA call goes to this same server: hand it to the test client."""

    def forward(request):
        answer = Client().post(
            urlsplit(request.url).path, data=request.body, content_type="application/x-www-form-urlencoded"
        )
        return answer.status_code, {}, answer.content

    fake_lwa.add_callback("POST", url, callback=forward, content_type="application/json")


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def test_click_through_to_connected(mock_routes, no_app_configured, owner, owner_client, fake_lwa):
    started = owner_client.post(START_URL, {}, format="json").json()
    auth_url = started["authUrl"]
    assert auth_url.startswith(f"http://testserver{MOCK_CONSENT}?")
    assert "version=beta" in auth_url

    browser = Client()
    browser.cookies = owner_client.cookies  # the seller's browser: it started the flow in the web app
    consent = browser.get(auth_url)
    assert consent.status_code == 200
    html = consent.content.decode()
    assert "Fake Seller Central" in html or "fake" in html.lower()
    form_action = re.search(r'<form method="get" action="([^"]+)"', html).group(1)
    assert form_action == "http://testserver/api/v1/marketplaces/amazon/oauth/callback"

    forward_to_django(fake_lwa, f"http://testserver{MOCK_TOKEN}")
    landed = browser.get(
        urlsplit(form_action).path,
        {
            "state": field(html, "state"),
            "spapi_oauth_code": field(html, "spapi_oauth_code"),
            "selling_partner_id": "AMOCKSELLER1",
        },
    )
    assert landed.status_code == 200, landed.content
    assert "Amazon connected" in landed.content.decode()

    connection = MarketplaceConnection.objects.get()
    assert connection.tenant_id == owner.tenant_id and connection.status == ConnectionStatus.CONNECTED
    assert get_secret_store().read(connection.secret_ref)["refresh_token"].startswith("Atzr|mock-")
    assert owner_client.get(STATUS_URL).json()["status"] == "CONNECTED"


def test_mock_cancel_and_expired_code(mock_routes, no_app_configured, owner_client, fake_lwa):
    browser = Client()
    browser.cookies = owner_client.cookies
    html = browser.get(owner_client.post(START_URL, {}, format="json").json()["authUrl"]).content.decode()
    cancelled = browser.get(
        "/api/v1/marketplaces/amazon/oauth/callback", {"state": field(html, "state"), "error": "access_denied"}
    )
    assert cancelled.status_code == 400

    html = browser.get(owner_client.post(START_URL, {}, format="json").json()["authUrl"]).content.decode()
    forward_to_django(fake_lwa, f"http://testserver{MOCK_TOKEN}")
    expired = browser.get(
        "/api/v1/marketplaces/amazon/oauth/callback",
        {"state": field(html, "state"), "spapi_oauth_code": "mock-expired", "selling_partner_id": "AMOCKSELLER1"},
    )
    assert expired.status_code == 400 and "Token exchange failed" in expired.content.decode()
    assert MarketplaceConnection.objects.get().status == ConnectionStatus.ERROR


def test_mock_token_endpoint_speaks_lwa(mock_routes):
    client = Client()
    answer = client.post(
        MOCK_TOKEN,
        {
            "grant_type": "authorization_code",
            "code": "mock-abc",
            "client_id": mock_views.MOCK_CLIENT_ID,
            "client_secret": mock_views.MOCK_CLIENT_SECRET,
        },
    )
    assert answer.status_code == 200
    assert set(answer.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    wrong = client.post(
        MOCK_TOKEN, {"grant_type": "authorization_code", "code": "mock-abc", "client_id": "x", "client_secret": "y"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_not_routed_with_debug_off(settings, owner_client):
    settings.DEBUG = False
    settings.AMAZON_USE_MOCK = True  # as in production for the poller's mock source (runbook step 4)
    reload_urls()
    try:
        assert Client().get(MOCK_CONSENT).status_code == 404
        assert Client().post(MOCK_TOKEN, {"grant_type": "authorization_code"}).status_code == 404
        # And OAuth uses the real Seller Central, not the fake.
        auth_url = owner_client.post(START_URL, {}, format="json").json()["authUrl"]
        assert auth_url.startswith("https://sellercentral.amazon.com/apps/authorize/consent?")
    finally:
        settings.AMAZON_USE_MOCK = False
        reload_urls()


def test_views_refuse_if_reached_with_debug_off(mock_routes):
    mock_routes.DEBUG = False  # routed while DEBUG was on, then turned off
    assert Client().get(MOCK_CONSENT).status_code == 404
    assert Client().post(MOCK_TOKEN, {}).status_code == 404
    factory = RequestFactory()
    with pytest.raises(Http404):
        mock_views.mock_consent(factory.get(MOCK_CONSENT))
    with pytest.raises(Http404):
        mock_views.mock_token(factory.post(MOCK_TOKEN))
