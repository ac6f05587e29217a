"""Runbook "Basculer vers Credentials KeyBuzz": after AMAZON_SPAPI_APP_SOURCE changes, connections
made with the other app read NEEDS_REAUTH (status, admin), are not polled, and OAuth revives them."""

from __future__ import annotations

import pytest
from django.test import Client

from keybuzz.secrets import get_secret_store
from marketplaces.amazon.refresh_tokens import refresh_token_read
from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.selectors import pollable_connections
from tests.factories import make_tenant, make_user
from tests.marketplaces.conftest import (
    AMAZON_OAUTH,
    REFRESH_TOKEN,
    STATUS_URL,
    callback,
    lwa_ok,
    make_connection,
    start_flow,
)

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]


@pytest.fixture
def switched(amazon_app, owner):
    old = make_connection(owner.tenant, app_source="external_test")
    amazon_app.AMAZON_SPAPI_APP_SOURCE = "keybuzz"
    return old


def test_status_reads_needs_reauth_after_the_switch(switched, owner_client):
    body = owner_client.get(STATUS_URL).json()
    assert body["status"] == "NEEDS_REAUTH" and body["connected"] is False
    assert body["appSource"] == "keybuzz"
    assert body["connections"][0]["status"] == "NEEDS_REAUTH"
    assert body["connections"][0]["appSource"] == "external_test"


def test_not_polled_after_the_switch(switched, owner):
    current = make_connection(make_tenant(), seller="OTHERSELLER", app_source="keybuzz")
    assert list(pollable_connections()) == [current]  # the switched one is left alone
    assert refresh_token_read(current.secret_ref).startswith("Atzr|OTHERSELLER")


def test_switching_back_revives_them(switched, amazon_app, owner_client):
    amazon_app.AMAZON_SPAPI_APP_SOURCE = "external_test"
    assert owner_client.get(STATUS_URL).json()["status"] == "CONNECTED"
    assert list(pollable_connections()) == [switched]


def test_reconnecting_through_oauth_brings_it_back(switched, owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    assert callback(Client(), state=start_flow(owner_client)).status_code == 200
    connection = MarketplaceConnection.objects.get()
    assert connection.pk == switched.pk
    assert (connection.status, connection.app_source) == (ConnectionStatus.CONNECTED, "keybuzz")
    assert owner_client.get(STATUS_URL).json()["status"] == "CONNECTED"
    assert list(pollable_connections()) == [connection]
    assert get_secret_store().read(connection.secret_ref)["refresh_token"] == REFRESH_TOKEN


def test_admin_shows_needs_reauth_and_no_secret(switched):
    user = make_user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    page = client.get("/admin/marketplaces/marketplaceconnection/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "NEEDS_REAUTH" in html
    assert "Atzr|" not in html
    filtered = client.get("/admin/marketplaces/marketplaceconnection/?effective_status=NEEDS_REAUTH")
    assert switched.selling_partner_id in filtered.content.decode()
    filtered = client.get("/admin/marketplaces/marketplaceconnection/?effective_status=CONNECTED")
    assert switched.selling_partner_id not in filtered.content.decode()
    change = client.get(f"/admin/marketplaces/marketplaceconnection/{switched.pk}/change/")
    assert change.status_code == 200 and "Atzr|" not in change.content.decode()
