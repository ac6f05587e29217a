"""Amazon OAuth: start (consent URL, state) and callback (state, LWA exchange, secret, connection)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.models import Membership, Role
from keybuzz.secrets import get_secret_store
from marketplaces.amazon.refresh_tokens import refresh_token_path
from marketplaces.models import ConnectionStatus, MarketplaceConnection, OAuthState
from marketplaces.views import BROWSER_COOKIE
from tests.factories import api_client, make_member
from tests.marketplaces.conftest import (
    AMAZON_OAUTH,
    APPLICATION_ID,
    BROWSER_KEYS,
    CALLBACK_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    LWA_URL,
    REFRESH_TOKEN,
    SELLER_ID,
    START_URL,
    STATUS_URL,
    callback,
    form_of,
    lwa_error,
    lwa_ok,
    query_of,
    start_flow,
)

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]
browser = APIClient  # the callback comes from the seller's browser: no JWT


def seller_browser(state: str) -> APIClient:
    """The browser that started the flow for `state`: it holds start's cookie."""
    client = APIClient()
    client.cookies[BROWSER_COOKIE] = BROWSER_KEYS[state]
    return client


# --- start ---------------------------------------------------------------------------------------


def test_start_answers_the_runbook_shape(owner, owner_client):
    response = owner_client.post(START_URL, content_type="application/json")  # the runbook's curl: no body
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"authUrl", "expiresAt", "message"}
    assert body["authUrl"].startswith("https://sellercentral.amazon.com/apps/authorize/consent?")
    params = query_of(body["authUrl"])
    assert params["application_id"] == APPLICATION_ID
    assert "version" not in params and "redirect_uri" not in params
    # >= 256 bits of randomness, stored only as its SHA-256, bound to tenant and user, 15 minutes.
    state = params["state"]
    assert len(state) >= 43
    row = OAuthState.objects.get()
    assert row.state_hash == hashlib.sha256(state.encode()).hexdigest()
    assert state not in json.dumps(list(OAuthState.objects.values()), default=str)
    assert (row.tenant_id, row.user_id) == (owner.tenant_id, owner.user_id)
    assert row.used_at is None
    assert timedelta(minutes=14) < row.expires_at - timezone.now() <= timedelta(minutes=15)


def test_each_start_gets_a_new_state(owner_client):
    assert start_flow(owner_client) != start_flow(owner_client)
    assert OAuthState.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "host", "region", "marketplace_id"),
    [
        ({"marketplace": "US"}, "https://sellercentral.amazon.com", "NA", "ATVPDKIKX0DER"),
        ({"marketplace": "FR"}, "https://sellercentral-europe.amazon.com", "EU", "A13V1IB3VIYZZH"),
        ({"marketplace": "A1PA6795UKMFR9"}, "https://sellercentral-europe.amazon.com", "EU", "A1PA6795UKMFR9"),
        ({"marketplace": "jp"}, "https://sellercentral.amazon.co.jp", "FE", "A1VC38T7YXB528"),
        ({"region": "EU"}, "https://sellercentral-europe.amazon.com", "EU", ""),
        ({"region": "FE"}, "https://sellercentral.amazon.co.jp", "FE", ""),
        ({}, "https://sellercentral.amazon.com", "NA", ""),
    ],
)
def test_consent_host_per_region(owner_client, body, host, region, marketplace_id):
    response = owner_client.post(START_URL, body, format="json")
    assert response.status_code == 200
    assert response.json()["authUrl"].startswith(host + "/apps/authorize/consent?")
    assert response.json()["region"] == region
    row = OAuthState.objects.get()
    assert (row.region, row.marketplace_id) == (region, marketplace_id)


def test_default_region_is_the_apps(amazon_app, owner_client):
    amazon_app.AMAZON_SPAPI_REGION = "eu-west-1"
    response = owner_client.post(START_URL, {}, format="json")
    assert response.json()["authUrl"].startswith("https://sellercentral-europe.amazon.com/apps/authorize/consent?")


@pytest.mark.parametrize(("draft", "redirect_uri"), [("true", ""), ("false", "https://api.keybuzz.io/cb")])
def test_draft_and_redirect_uri_parameters(amazon_app, owner_client, draft, redirect_uri):
    amazon_app.AMAZON_SPAPI_DRAFT_APP = draft
    amazon_app.AMAZON_SPAPI_REDIRECT_URI = redirect_uri
    params = query_of(owner_client.post(START_URL, {"marketplace": "DE"}, format="json").json()["authUrl"])
    assert ("version" in params) is (draft == "true")
    if draft == "true":
        assert params["version"] == "beta"
    assert params.get("redirect_uri", "") == redirect_uri


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"marketplace": "XX"}, "invalid_marketplace"),
        ({"region": "MARS"}, "invalid_region"),
        ({"marketplace": "FR", "region": "NA"}, "invalid_region"),
    ],
)
def test_start_rejects_unknown_targets(owner_client, body, code):
    response = owner_client.post(START_URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not OAuthState.objects.exists()


def test_agents_and_anonymous_cannot_start():
    agent = make_member(role=Role.AGENT)
    response = api_client(agent).post(START_URL, {}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"
    assert APIClient().post(START_URL, {}, format="json").status_code == 401
    assert not OAuthState.objects.exists()


def test_admin_role_may_start():
    admin = make_member(role=Role.ADMIN)
    assert api_client(admin).post(START_URL, {}, format="json").status_code == 200


# --- callback: success -----------------------------------------------------------------------------


def test_happy_path_end_to_end(owner, owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    state = start_flow(owner_client, marketplace="FR")
    response = callback(browser(), state=state)

    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "Amazon connected" in response.content.decode()
    # LWA got the code in its wire format.
    assert len(fake_lwa.calls) == 1
    assert fake_lwa.calls[0].request.url == LWA_URL
    assert form_of(fake_lwa.calls[0]) == {
        "grant_type": "authorization_code",
        "code": "ANcodeFromAmazon123",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    connection = MarketplaceConnection.objects.get()
    assert connection.tenant_id == owner.tenant_id
    assert connection.status == ConnectionStatus.CONNECTED
    assert connection.selling_partner_id == SELLER_ID
    assert (connection.region, connection.marketplace_ids) == ("EU", ["A13V1IB3VIYZZH"])
    assert connection.app_source == "external_test"
    assert connection.connected_at is not None
    path = refresh_token_path(tenant_id=owner.tenant_id, selling_partner_id=SELLER_ID)
    assert connection.secret_ref == path
    assert get_secret_store().read(path)["refresh_token"] == REFRESH_TOKEN
    # The status endpoint agrees (runbook step 7).
    status = owner_client.get(STATUS_URL).json()
    assert status["status"] == "CONNECTED"
    assert status["connections"][0]["sellingPartnerId"] == SELLER_ID


def test_refresh_tokens_are_stored_per_tenant_and_seller(fake_lwa):
    a, b = make_member(), make_member()
    lwa_ok(fake_lwa, refresh_token="Atzr|token-of-tenant-a")
    callback(browser(), state=start_flow(api_client(a)))
    lwa_ok(fake_lwa, refresh_token="Atzr|token-of-tenant-b")  # the same seller account, another tenant
    fake_lwa.replace(
        "POST",
        LWA_URL,
        json={
            "access_token": "x",
            "refresh_token": "Atzr|token-of-tenant-b",
            "token_type": "bearer",
            "expires_in": 3600,
        },
    )
    callback(browser(), state=start_flow(api_client(b)))
    store = get_secret_store()
    assert (
        store.read(refresh_token_path(tenant_id=a.tenant_id, selling_partner_id=SELLER_ID))["refresh_token"]
        == "Atzr|token-of-tenant-a"
    )
    assert (
        store.read(refresh_token_path(tenant_id=b.tenant_id, selling_partner_id=SELLER_ID))["refresh_token"]
        == "Atzr|token-of-tenant-b"
    )
    assert MarketplaceConnection.objects.count() == 2


def test_reconnecting_reuses_the_row(owner, owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    callback(browser(), state=start_flow(owner_client, marketplace="FR"))
    first = MarketplaceConnection.objects.get()
    MarketplaceConnection.objects.filter(pk=first.pk).update(
        status=ConnectionStatus.ERROR,
        last_error="boom",
        spapi_forbidden_at=timezone.now(),  # sync_orders met a missing role: a new consent may grant it
        spapi_error="SP-API refused the order data",
    )

    fake_lwa.replace(
        "POST",
        LWA_URL,
        json={"access_token": "a2", "refresh_token": "Atzr|second-token", "token_type": "bearer", "expires_in": 3600},
    )
    response = callback(browser(), state=start_flow(owner_client, marketplace="DE"))
    assert response.status_code == 200
    again = MarketplaceConnection.objects.get()
    assert again.pk == first.pk
    assert again.status == ConnectionStatus.CONNECTED and again.last_error == ""
    assert (again.spapi_forbidden_at, again.spapi_error) == (None, "")  # order context is fetched again
    assert again.marketplace_ids == ["A13V1IB3VIYZZH", "A1PA6795UKMFR9"]
    assert again.connected_at > first.connected_at
    assert get_secret_store().read(again.secret_ref)["refresh_token"] == "Atzr|second-token"


def test_redirects_to_the_frontend_with_a_marker(amazon_app, owner_client, fake_lwa):
    amazon_app.FRONTEND_URL = "https://app.keybuzz.io/settings/integrations?tab=amazon"
    lwa_ok(fake_lwa)
    response = callback(browser(), state=start_flow(owner_client))
    assert response.status_code == 302
    assert response["Referrer-Policy"] == "no-referrer"
    location = response["Location"]
    assert location.startswith("https://app.keybuzz.io/settings/integrations?")
    assert query_of(location) == {"tab": "amazon", "amazon": "connected", "seller": SELLER_ID}

    response = callback(browser(), state="tampered-state-value")
    assert response.status_code == 302
    assert query_of(response["Location"])["amazon"] == "error"
    assert query_of(response["Location"])["code"] == "invalid_state"


def test_json_clients_get_json(owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    response = seller_browser(state).get(
        CALLBACK_URL,
        {"state": state, "spapi_oauth_code": "c", "selling_partner_id": SELLER_ID},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "CONNECTED"
    response = seller_browser(state).get(
        CALLBACK_URL,
        {"state": state, "spapi_oauth_code": "c", "selling_partner_id": SELLER_ID},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_state",
        "message": "Invalid state: already used (start the Amazon connection again)",
    }


# --- callback: the state ---------------------------------------------------------------------------


def test_replayed_state_is_refused(owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    assert callback(browser(), state=state).status_code == 200
    replay = callback(browser(), state=state, code="ANanotherCode")
    assert replay.status_code == 400
    assert "Invalid state" in replay.content.decode()
    assert replay["Referrer-Policy"] == "no-referrer"
    assert len(fake_lwa.calls) == 1  # the replay never reached Amazon


def test_expired_state_is_refused(owner_client, fake_lwa, monkeypatch):
    state = start_flow(owner_client)
    later = timezone.now() + timedelta(minutes=15, seconds=1)
    monkeypatch.setattr("marketplaces.services.oauth.timezone.now", lambda: later)
    response = callback(browser(), state=state)
    assert response.status_code == 400
    assert "Invalid state: expired" in response.content.decode()
    assert not fake_lwa.calls
    assert not MarketplaceConnection.objects.exists()


def test_state_just_before_expiry_still_works(owner_client, fake_lwa, monkeypatch):
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    later = timezone.now() + timedelta(minutes=14, seconds=50)
    monkeypatch.setattr("marketplaces.services.oauth.timezone.now", lambda: later)
    assert callback(browser(), state=state).status_code == 200


def test_ttl_comes_from_the_setting(amazon_app, owner_client):
    amazon_app.AMAZON_OAUTH_STATE_TTL = 60
    start_flow(owner_client)
    assert OAuthState.objects.get().expires_at - timezone.now() <= timedelta(seconds=60)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # one character changed
        lambda s: s + "x",
        lambda s: s.upper(),
        lambda s: hashlib.sha256(s.encode()).hexdigest(),  # the stored hash is not a valid state
    ],
)
def test_tampered_state_is_refused(owner_client, fake_lwa, mutate):
    state = start_flow(owner_client)
    response = callback(browser(), state=mutate(state))
    assert response.status_code == 400
    assert "Invalid state: unknown" in response.content.decode()
    assert not fake_lwa.calls
    # The genuine state is still usable afterwards.
    lwa_ok(fake_lwa)
    assert callback(browser(), state=state).status_code == 200


def test_other_tenants_state_connects_only_its_own_tenant(fake_lwa):
    """A state names its tenant: whoever's browser brings it back, the connection is that tenant's,
    and another tenant never sees it."""
    a, b = make_member(), make_member()
    client_a, client_b = api_client(a), api_client(b)
    state_a = start_flow(client_a)
    start_flow(client_b)
    lwa_ok(fake_lwa)
    assert callback(client_b, state=state_a).status_code == 200  # even sent with B's session
    connection = MarketplaceConnection.objects.get()
    assert connection.tenant_id == a.tenant_id
    assert client_b.get(STATUS_URL).json()["connections"] == []
    assert client_a.get(STATUS_URL).json()["status"] == "CONNECTED"


def test_state_of_a_deactivated_tenant_is_refused(owner, owner_client, fake_lwa):
    state = start_flow(owner_client)
    owner.tenant.is_active = False
    owner.tenant.save(update_fields=["is_active"])
    response = callback(browser(), state=state)
    assert response.status_code == 403
    assert not fake_lwa.calls and not MarketplaceConnection.objects.exists()


def test_state_of_a_user_demoted_since_is_refused(owner, owner_client, fake_lwa):
    state = start_flow(owner_client)
    Membership.objects.filter(pk=owner.pk).update(role=Role.AGENT)
    response = callback(browser(), state=state)
    assert response.status_code == 403
    assert not fake_lwa.calls and not MarketplaceConnection.objects.exists()


# --- callback: malformed requests, Amazon errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "state: missing parameter"),
        ({"state": "s"}, "spapi_oauth_code: missing parameter"),
        ({"state": "s", "spapi_oauth_code": "c"}, "selling_partner_id: missing parameter"),
        ({"state": "s", "spapi_oauth_code": "c", "selling_partner_id": "../../etc"}, "letters and digits"),
        ({"state": "s", "spapi_oauth_code": "c", "selling_partner_id": "A" * 65}, "selling_partner_id"),
        ({"state": "s" * 600, "spapi_oauth_code": "c", "selling_partner_id": "A1"}, "state"),
    ],
)
def test_malformed_callbacks_get_a_clear_400(fake_lwa, params, fragment):
    response = browser().get(CALLBACK_URL, params)
    assert response.status_code == 400
    assert fragment in response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"
    response = browser().get(CALLBACK_URL, params, HTTP_ACCEPT="application/json")
    assert response.json()["code"] == "invalid_callback"
    assert not fake_lwa.calls


def test_amazon_error_parameter_is_a_clear_400_and_burns_the_state(owner_client, fake_lwa):
    state = start_flow(owner_client)
    response = seller_browser(state).get(
        CALLBACK_URL, {"state": state, "error": "access_denied", "error_description": "<script>alert(1)</script>"}
    )
    assert response.status_code == 400
    assert "authorization_denied" in response.content.decode()
    assert "<script>" not in response.content.decode()
    assert OAuthState.objects.get().used_at is not None
    assert not fake_lwa.calls and not MarketplaceConnection.objects.exists()


def test_post_is_not_allowed():
    assert browser().post(CALLBACK_URL).status_code == 405


# --- callback: bound to the browser that started ------------------------------------------------------


def test_start_binds_the_flow_to_the_browser_with_a_cookie(owner_client, settings):
    settings.DEBUG = False
    response = owner_client.post(START_URL, {}, format="json")
    cookie = response.cookies[BROWSER_COOKIE]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/api/v1/marketplaces/amazon/oauth/"
    assert int(cookie["max-age"]) == settings.AMAZON_OAUTH_STATE_TTL
    assert response["Cache-Control"] == "no-store"
    stored = OAuthState.objects.get()
    assert stored.browser_hash == hashlib.sha256(cookie.value.encode()).hexdigest()
    assert cookie.value not in json.dumps(list(OAuthState.objects.values()), default=str)


@pytest.mark.parametrize("cookie", [None, "x" * 43, "forged-key"])
def test_a_callback_from_another_browser_is_refused_and_keeps_the_state(owner_client, fake_lwa, cookie):
    """A seller who opens another tenant's authorization link cannot connect their account to it."""
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    other = browser()
    if cookie:
        other.cookies[BROWSER_COOKIE] = cookie
    refused = callback(other, state=state, same_browser=False, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_state"
    assert "started in another browser" in refused.json()["message"]
    assert not fake_lwa.calls and not MarketplaceConnection.objects.exists()
    assert OAuthState.objects.get().used_at is None
    # The browser that started finishes it.
    assert callback(browser(), state=state).status_code == 200
    assert MarketplaceConnection.objects.get().status == ConnectionStatus.CONNECTED


def test_a_declined_consent_from_another_browser_does_not_burn_the_state(owner_client):
    state = start_flow(owner_client)
    refused = callback(
        browser(), state=state, same_browser=False, error="access_denied", HTTP_ACCEPT="application/json"
    )
    assert refused.json()["code"] == "invalid_state"
    assert OAuthState.objects.get().used_at is None


def test_two_tabs_of_one_browser_can_each_start_a_flow(owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    first, second = start_flow(owner_client), start_flow(owner_client)
    assert BROWSER_KEYS[first] == BROWSER_KEYS[second]  # the second start reuses the browser's key
    assert callback(browser(), state=first).status_code == 200
    assert callback(browser(), state=second, code="ANsecondCode").status_code == 200


def test_head_does_not_spend_the_state(owner_client):
    state = start_flow(owner_client)
    client = seller_browser(state)
    response = client.head(CALLBACK_URL, {"state": state, "spapi_oauth_code": "c", "selling_partner_id": SELLER_ID})
    assert response.status_code == 405
    assert OAuthState.objects.get().used_at is None


def test_cors_answers_the_web_app_with_credentials_and_no_one_else(owner_client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.keybuzz.io"]
    preflight = browser().options(
        START_URL,
        HTTP_ORIGIN="https://app.keybuzz.io",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.keybuzz.io"
    assert preflight["Access-Control-Allow-Credentials"] == "true"
    evil = browser().options(START_URL, HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "Access-Control-Allow-Origin" not in evil
    assert "Access-Control-Allow-Origin" not in browser().get("/health", HTTP_ORIGIN="https://app.keybuzz.io")


# --- callback: every LWA failure kind --------------------------------------------------------------


def _lwa_timeout(rsps):
    import requests

    rsps.post(LWA_URL, body=requests.exceptions.ReadTimeout("timed out"))


def _lwa_unreachable(rsps):
    import requests

    rsps.post(LWA_URL, body=requests.exceptions.ConnectionError("refused"))


@pytest.mark.parametrize(
    ("arrange", "amazon_code", "status"),
    [
        (lambda r: lwa_error(r, error="invalid_grant"), "invalid_grant", 400),
        (lambda r: lwa_error(r, error="invalid_client", status=401), "invalid_client", 400),
        (lambda r: lwa_error(r, error="unauthorized_client"), "unauthorized_client", 400),
        (lambda r: r.post(LWA_URL, status=503, json={"error": "server_error"}), "server_error", 502),
        (lambda r: r.post(LWA_URL, status=500, body="Internal Server Error"), "server_error", 502),
        (_lwa_timeout, "timeout", 502),
        (_lwa_unreachable, "connection_error", 502),
        (
            lambda r: r.post(LWA_URL, json={"access_token": "a", "token_type": "bearer", "expires_in": 3600}),
            "invalid_response",
            502,
        ),  # no refresh_token
        (lambda r: r.post(LWA_URL, body="not json"), "invalid_response", 502),
    ],
)
def test_token_exchange_failures(owner, owner_client, fake_lwa, caplog, arrange, amazon_code, status):
    arrange(fake_lwa)
    state = start_flow(owner_client)
    response = callback(browser(), state=state, HTTP_ACCEPT="application/json")
    assert response.status_code == status
    body = response.json()
    assert body["code"] == "token_exchange_failed"
    assert body["message"].startswith("Token exchange failed")
    assert amazon_code in body["message"]

    connection = MarketplaceConnection.objects.get()
    assert connection.tenant_id == owner.tenant_id
    assert connection.status == ConnectionStatus.ERROR
    assert connection.last_error.startswith("Token exchange failed") and amazon_code in connection.last_error
    assert connection.last_error_at is not None and connection.secret_ref == ""
    assert "amazon oauth error" in caplog.text.lower()
    assert CLIENT_SECRET not in caplog.text and "ANcodeFromAmazon123" not in caplog.text
    # The state is spent: the seller starts again.
    assert OAuthState.objects.get().used_at is not None


def test_failed_reauthorization_keeps_a_working_connection(owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    callback(browser(), state=start_flow(owner_client))
    fake_lwa.replace("POST", LWA_URL, json={"error": "invalid_grant", "error_description": "used"}, status=400)
    response = callback(browser(), state=start_flow(owner_client))
    assert response.status_code == 400
    connection = MarketplaceConnection.objects.get()
    assert connection.status == ConnectionStatus.CONNECTED  # its stored token still works
    assert "invalid_grant" in connection.last_error
    assert get_secret_store().read(connection.secret_ref)["refresh_token"] == REFRESH_TOKEN


def test_secret_store_failure_is_a_503_and_no_connected_row(owner_client, fake_lwa, monkeypatch):
    from keybuzz.secrets import SecretStoreUnavailable

    lwa_ok(fake_lwa)
    store = get_secret_store()

    def unavailable(path, data):
        raise SecretStoreUnavailable("Secret store unreachable at http://127.0.0.1:1")

    monkeypatch.setattr(store, "write", unavailable)
    response = callback(browser(), state=start_flow(owner_client), HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response.json()["code"] == "secret_store_unavailable"
    assert MarketplaceConnection.objects.get().status == ConnectionStatus.ERROR


def test_app_credentials_missing_at_callback_keeps_the_state(amazon_app, owner_client, fake_lwa):
    state = start_flow(owner_client)
    amazon_app.AMAZON_SPAPI_CLIENT_ID = amazon_app.AMAZON_SPAPI_CLIENT_SECRET = ""
    amazon_app.AMAZON_SPAPI_APPLICATION_ID = ""
    response = callback(browser(), state=state, HTTP_ACCEPT="application/json")
    assert response.status_code == 503 and response.json()["code"] == "credentials_missing"
    assert OAuthState.objects.get().used_at is None
