"""The happy path with a real secret store: the session's OpenBao dev server (KV v2 on 127.0.0.1).
The SP-API app is read from OpenBao (no env variables), the refresh token lands in OpenBao at the
tenant's and seller's path, and disconnect deletes it there."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from marketplaces.amazon.refresh_tokens import refresh_token_path
from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.views import BROWSER_COOKIE
from tests.marketplaces.conftest import (
    AMAZON_OAUTH,
    BROWSER_KEYS,
    DISCONNECT_URL,
    REFRESH_TOKEN,
    SELLER_ID,
    START_URL,
    callback,
    form_of,
    lwa_ok,
    query_of,
    start_flow,
)

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]

APP = {
    "client_id": "amzn1.application-oa2-client.from-openbao",
    "client_secret": "client-secret-stored-in-openbao-0123456789",
    "application_id": "amzn1.sp.solution.from-openbao",
    "region": "eu-west-1",
    "draft": "true",
    "app_source": "external_test",
}


def kv_read(openbao, path: str) -> dict | None:
    import hvac.exceptions

    try:
        return openbao.client().secrets.kv.v2.read_secret_version(
            path=path, mount_point=openbao.mount, raise_on_deleted_version=True
        )["data"]["data"]
    except hvac.exceptions.InvalidPath:
        return None


def test_happy_path_against_openbao(vault_settings, no_app_env, owner, owner_client, fake_lwa):
    openbao = vault_settings
    fake_lwa.add_passthru(openbao.addr)
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path="keybuzz/ai/amazon_spapi_app_temp", secret=APP, mount_point=openbao.mount
    )
    lwa_ok(fake_lwa)

    response = owner_client.post(START_URL, {}, format="json")
    started = response.json()
    params = query_of(started["authUrl"])
    BROWSER_KEYS[params["state"]] = response.cookies[BROWSER_COOKIE].value
    assert started["authUrl"].startswith("https://sellercentral-europe.amazon.com/apps/authorize/consent?")
    assert params["application_id"] == APP["application_id"] and params["version"] == "beta"

    response = callback(APIClient(), state=params["state"])
    assert response.status_code == 200, response.content
    lwa_call = [c for c in fake_lwa.calls if "api.amazon.com" in c.request.url]
    assert form_of(lwa_call[0])["client_id"] == APP["client_id"]
    assert form_of(lwa_call[0])["client_secret"] == APP["client_secret"]

    connection = MarketplaceConnection.objects.get()
    assert connection.status == ConnectionStatus.CONNECTED and connection.region == "EU"
    path = refresh_token_path(tenant_id=owner.tenant_id, selling_partner_id=SELLER_ID)
    assert connection.secret_ref == path
    assert kv_read(openbao, path)["refresh_token"] == REFRESH_TOKEN

    assert owner_client.post(DISCONNECT_URL, {}, format="json").status_code == 200
    assert kv_read(openbao, path) is None


def test_missing_app_in_openbao_is_a_503_naming_the_path(vault_settings, no_app_env, owner_client, settings):
    settings.AMAZON_SPAPI_APP_SOURCE = "keybuzz"
    response = owner_client.post(START_URL, {}, format="json")
    assert response.status_code == 503
    assert response.json() == {
        "code": "credentials_missing",
        "message": "No credentials found: keybuzz/ai/amazon_spapi_app",
    }


def test_reconnect_overwrites_the_token_in_openbao(vault_settings, owner, owner_client, fake_lwa):
    fake_lwa.add_passthru(vault_settings.addr)
    lwa_ok(fake_lwa)
    callback(APIClient(), state=start_flow(owner_client))
    fake_lwa.replace(
        "POST",
        "https://api.amazon.com/auth/o2/token",
        json={"access_token": "a", "refresh_token": "Atzr|rotated", "token_type": "bearer", "expires_in": 3600},
    )
    callback(APIClient(), state=start_flow(owner_client))
    path = refresh_token_path(tenant_id=owner.tenant_id, selling_partner_id=SELLER_ID)
    assert kv_read(vault_settings, path)["refresh_token"] == "Atzr|rotated"
    assert MarketplaceConnection.objects.count() == 1
