"""Status and disconnect: the tenant's own connections only, never a secret, idempotent disconnect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.models import Role
from keybuzz.secrets import SecretNotFound, SecretStoreUnavailable, get_secret_store
from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection
from tests.factories import api_client, make_member
from tests.marketplaces.conftest import AMAZON_OAUTH, DISCONNECT_URL, SELLER_ID, STATUS_URL, make_connection
from tickets.models import Direction, Ticket, TicketMessage

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]


def _messages(connection, n: int) -> None:
    now = timezone.now()
    for i in range(n):
        ticket = Ticket.objects.create(
            tenant=connection.tenant,
            connection_id=connection.id,
            thread_key=f"t{i}",
            subject=f"Order {i}",
            last_message_at=now,
        )
        message = ExternalMessage.objects.create(
            tenant=connection.tenant, connection=connection, external_id=f"m{i}", thread_key=f"t{i}", sent_at=now
        )
        TicketMessage.objects.create(
            tenant=connection.tenant,
            ticket=ticket,
            direction=Direction.INBOUND,
            body="Hello",
            external_message_id=message.id,
            sent_at=now,
        )
    # What the poller's filing transaction counts with the rows it files (marketplaces.polling.filing).
    MarketplaceConnection.objects.filter(pk=connection.pk).update(
        message_count=F("message_count") + n, ticket_count=F("ticket_count") + n
    )


def test_status_without_connection(owner_client):
    assert owner_client.get(STATUS_URL).json() == {
        "status": "NOT_CONNECTED",
        "connected": False,
        "appSource": "external_test",
        "connections": [],
    }


def test_status_lists_the_fields_and_counts(owner, owner_client):
    connection = make_connection(
        owner.tenant, last_polled_at=timezone.now() - timedelta(minutes=3), last_error="Amazon Poller error: timeout"
    )
    _messages(connection, 3)
    body = owner_client.get(STATUS_URL).json()
    assert body["status"] == "CONNECTED" and body["connected"] is True
    (item,) = body["connections"]
    assert item["id"] == str(connection.id)
    assert item["status"] == "CONNECTED"
    assert item["sellingPartnerId"] == SELLER_ID
    assert item["region"] == "EU" and item["marketplaceIds"] == ["A13V1IB3VIYZZH"]
    assert item["appSource"] == "external_test"
    assert item["connectedAt"] and item["lastPolledAt"]
    assert item["lastError"] == "Amazon Poller error: timeout"
    assert item["messageCount"] == 3 and item["ticketCount"] == 3
    assert "secretRef" not in item and "secret_ref" not in str(body)


def test_agents_may_read_the_status():
    agent = make_member(role=Role.AGENT)
    make_connection(agent.tenant)
    assert api_client(agent).get(STATUS_URL).json()["status"] == "CONNECTED"
    assert APIClient().get(STATUS_URL).status_code == 401


def test_status_query_count_does_not_grow_with_connections(owner, owner_client, django_assert_max_num_queries):
    for i in range(5):
        _messages(make_connection(owner.tenant, seller=f"SELLER{i}"), 2)
    # Authentication (membership) + one query for the connections with their counts.
    with django_assert_max_num_queries(2):
        body = owner_client.get(STATUS_URL).json()
    assert len(body["connections"]) == 5
    assert all(c["messageCount"] == 2 and c["ticketCount"] == 2 for c in body["connections"])


def test_tenant_b_cannot_see_or_disconnect_tenant_a():
    a, b = make_member(), make_member()
    connection = make_connection(a.tenant)
    client_b = api_client(b)
    assert client_b.get(STATUS_URL).json()["connections"] == []
    response = client_b.post(DISCONNECT_URL, {"sellingPartnerId": SELLER_ID}, format="json")
    assert response.status_code == 404
    assert client_b.post(DISCONNECT_URL, {}, format="json").status_code == 404
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED
    assert get_secret_store().read(connection.secret_ref)


def test_disconnect_deletes_the_secret_and_is_idempotent(owner, owner_client):
    connection = make_connection(owner.tenant)
    path = connection.secret_ref
    response = owner_client.post(DISCONNECT_URL, {}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "DISCONNECTED"
    assert body["connections"][0]["status"] == "DISCONNECTED"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.DISCONNECTED
    assert connection.disconnected_at is not None and connection.secret_ref == ""
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)

    again = owner_client.post(DISCONNECT_URL, {}, format="json")
    assert again.status_code == 200 and again.json()["connections"][0]["status"] == "DISCONNECTED"
    again = owner_client.post(DISCONNECT_URL, {"sellingPartnerId": SELLER_ID}, format="json")
    assert again.status_code == 200
    assert owner_client.get(STATUS_URL).json()["status"] == "DISCONNECTED"


def test_disconnect_needs_the_seller_when_there_are_several(owner, owner_client):
    make_connection(owner.tenant, seller="SELLERONE")
    make_connection(owner.tenant, seller="SELLERTWO")
    response = owner_client.post(DISCONNECT_URL, {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "seller_required"
    assert response.json()["details"] == {"sellers": ["SELLERONE", "SELLERTWO"]}

    response = owner_client.post(DISCONNECT_URL, {"sellingPartnerId": "SELLERTWO"}, format="json")
    assert response.status_code == 200
    statuses = dict(MarketplaceConnection.objects.values_list("selling_partner_id", "status"))
    assert statuses == {"SELLERONE": "CONNECTED", "SELLERTWO": "DISCONNECTED"}
    # The query string works too (curl -X POST '...disconnect?sellingPartnerId=…').
    # (another query parameter is ignored, as on every endpoint; an unknown body field is not).
    response = owner_client.post(f"{DISCONNECT_URL}?sellingPartnerId=SELLERONE&_=1733300000", format="json")
    assert response.status_code == 200
    response = owner_client.post(DISCONNECT_URL, {"sellingPartnerID": "SELLERONE"}, format="json")
    assert (response.status_code, list(response.json()["details"])) == (400, ["sellingPartnerID"])


def test_disconnect_rejects_a_malformed_seller(owner_client):
    response = owner_client.post(DISCONNECT_URL, {"sellingPartnerId": "../x"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"


def test_agents_cannot_disconnect():
    agent = make_member(role=Role.AGENT)
    connection = make_connection(agent.tenant)
    response = api_client(agent).post(DISCONNECT_URL, {}, format="json")
    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED


def test_disconnect_when_the_store_is_down_stops_polling_and_can_be_retried(owner, owner_client, monkeypatch):
    connection = make_connection(owner.tenant)
    store = get_secret_store()
    original = store.delete

    def down(path):
        raise SecretStoreUnavailable("Secret store unreachable at http://127.0.0.1:1")

    monkeypatch.setattr(store, "delete", down)
    response = owner_client.post(DISCONNECT_URL, {}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "secret_store_unavailable"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.DISCONNECTED and connection.secret_ref

    monkeypatch.setattr(store, "delete", original)
    assert owner_client.post(DISCONNECT_URL, {}, format="json").status_code == 200
    connection.refresh_from_db()
    assert connection.secret_ref == ""
