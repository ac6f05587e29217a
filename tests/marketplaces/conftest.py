"""Fixtures for the Amazon connection tests: an SP-API app in the settings, a fake LWA speaking
Amazon's wire format through `responses`, and small helpers to run the OAuth flow.

Nothing here is autouse: the OAuth test modules opt in with `pytestmark = AMAZON_OAUTH`, so other
tests in this folder (the poller's) keep their own configuration."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from keybuzz.models import Role
from marketplaces.amazon import lwa as lwa_module
from marketplaces.views import BROWSER_COOKIE
from tests.factories import api_client, make_member

LWA_URL = "https://api.amazon.com/auth/o2/token"
CLIENT_ID = "amzn1.application-oa2-client.test0123456789"
CLIENT_SECRET = "amzn1.oa2-cs.v1.test-client-secret-0123456789abcdef"
APPLICATION_ID = "amzn1.sp.solution.11111111-2222-3333-4444-555555555555"
REFRESH_TOKEN = "Atzr|IwEBIKeyBuzzTestRefreshToken-0123456789abcdefghijklmnopqrstuvwxyz"
ACCESS_TOKEN = "Atza|IwEBIKeyBuzzTestAccessToken-0123456789"
SELLER_ID = "A3FHEXAMPLEYWS"
START_URL = "/api/v1/marketplaces/amazon/oauth/start"
CALLBACK_URL = "/api/v1/marketplaces/amazon/oauth/callback"
STATUS_URL = "/api/v1/marketplaces/amazon/status"
DISCONNECT_URL = "/api/v1/marketplaces/amazon/disconnect"
AMAZON_OAUTH = [pytest.mark.usefixtures("amazon_app", "no_retry_sleep")]


@pytest.fixture
def amazon_app(settings):
    """An SP-API app configured through the env variables; tests about the secret store clear it."""
    settings.AMAZON_SPAPI_CLIENT_ID = CLIENT_ID
    settings.AMAZON_SPAPI_CLIENT_SECRET = CLIENT_SECRET
    settings.AMAZON_SPAPI_APPLICATION_ID = APPLICATION_ID
    settings.AMAZON_SPAPI_REDIRECT_URI = ""
    settings.AMAZON_SPAPI_REGION = ""
    settings.AMAZON_SPAPI_DRAFT_APP = ""
    settings.AMAZON_SPAPI_APP_SOURCE = "external_test"
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_LWA_TOKEN_URL = LWA_URL
    settings.AMAZON_HTTP_RETRIES = 2
    settings.FRONTEND_URL = ""
    settings.AMAZON_OAUTH_RETURN_URL = ""
    return settings


@pytest.fixture
def no_retry_sleep(monkeypatch):
    """urllib3's retry backoff would sleep between attempts; the tests count attempts, not seconds."""
    monkeypatch.setattr("urllib3.util.retry.Retry.sleep", lambda self, response=None: None)
    lwa_module._client = None
    yield
    lwa_module._client = None


@pytest.fixture
def no_app_env(settings):
    settings.AMAZON_SPAPI_CLIENT_ID = ""
    settings.AMAZON_SPAPI_CLIENT_SECRET = ""
    settings.AMAZON_SPAPI_APPLICATION_ID = ""
    return settings


@pytest.fixture
def fake_lwa():
    """Every outgoing HTTP request goes through this mock; an unregistered URL fails the request."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def lwa_ok(rsps, *, refresh_token: str = REFRESH_TOKEN, access_token: str = ACCESS_TOKEN):
    return rsps.post(
        LWA_URL,
        json={"access_token": access_token, "refresh_token": refresh_token, "token_type": "bearer", "expires_in": 3600},
        status=200,
    )


def lwa_error(rsps, *, error: str, status: int = 400, description: str = "The request has an invalid grant"):
    return rsps.post(LWA_URL, json={"error_description": description, "error": error}, status=status)


def form_of(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@pytest.fixture
def owner(db):
    return make_member(role=Role.OWNER)


@pytest.fixture
def owner_client(owner):
    return api_client(owner)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# The browser key cookie start set for each state: the seller's browser sends it back with the
# callback (callback() does, unless told the callback comes from another browser).
BROWSER_KEYS: dict[str, str] = {}


def start_flow(client, **body) -> str:
    """POST start, return the state from the consent URL (its browser cookie kept aside)."""
    response = client.post(START_URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    state = query_of(response.json()["authUrl"])["state"]
    BROWSER_KEYS[state] = response.cookies[BROWSER_COOKIE].value
    return state


def callback(
    client,
    *,
    state: str,
    code: str = "ANcodeFromAmazon123",
    seller: str = SELLER_ID,
    same_browser: bool = True,
    **extra,
):
    """Amazon's redirect back, in the browser that started the flow (`same_browser`) or another."""
    headers = {k: extra.pop(k) for k in list(extra) if k.startswith("HTTP_")}
    params = {"state": state, "spapi_oauth_code": code, "selling_partner_id": seller, **extra}
    if same_browser and state in BROWSER_KEYS:
        client.cookies[BROWSER_COOKIE] = BROWSER_KEYS[state]
    return client.get(CALLBACK_URL, {k: v for k, v in params.items() if v is not None}, **headers)


def make_connection(
    tenant,
    *,
    seller: str = SELLER_ID,
    status: str = "CONNECTED",
    app_source: str = "external_test",
    with_secret: bool = True,
    **fields,
):
    """A connection as the OAuth callback leaves it (its token in the secret store when asked)."""
    from django.utils import timezone

    from keybuzz.secrets import get_secret_store
    from marketplaces.amazon.refresh_tokens import refresh_token_path
    from marketplaces.models import MarketplaceConnection

    path = refresh_token_path(tenant_id=tenant.id, selling_partner_id=seller) if with_secret else ""
    if with_secret:
        get_secret_store().write(path, {"refresh_token": f"Atzr|{seller}-{tenant.id}"})
    defaults = {"region": "EU", "marketplace_ids": ["A13V1IB3VIYZZH"], "connected_at": timezone.now()}
    return MarketplaceConnection.objects.create(
        tenant=tenant,
        selling_partner_id=seller,
        status=status,
        app_source=app_source,
        secret_ref=path,
        **{**defaults, **fields},
    )
