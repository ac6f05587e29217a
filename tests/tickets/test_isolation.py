"""Tenant A's token on tenant B's ids: always 404, never 403, and nothing changes."""

from __future__ import annotations

import pytest

from keybuzz.models import Role
from tests.factories import api_client, make_member, make_tenant
from tests.tickets.factories import add_message, make_ticket
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus


@pytest.fixture
def theirs(db):
    return make_ticket(make_tenant(), subject="Tenant B's ticket")


@pytest.fixture(params=[Role.AGENT, Role.OWNER])
def client_a(request, db):
    return api_client(make_member(make_tenant(), role=request.param))


def _assert_not_found(response):
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"
    assert "Tenant B" not in response.content.decode()


def test_read_another_tenants_ticket(client_a, theirs):
    _assert_not_found(client_a.get(f"/api/v1/tickets/{theirs.id}/"))


def test_update_another_tenants_ticket(client_a, theirs):
    for payload in ({"status": TicketStatus.RESOLVED}, {"status": TicketStatus.CLOSED}, {"assignee": None}):
        _assert_not_found(client_a.patch(f"/api/v1/tickets/{theirs.id}/", payload, format="json"))
    theirs.refresh_from_db()
    assert theirs.status == TicketStatus.OPEN


def test_reply_or_note_on_another_tenants_ticket(client_a, theirs):
    for payload in ({"body": "hi"}, {"type": "note", "body": "hi"}):
        _assert_not_found(client_a.post(f"/api/v1/tickets/{theirs.id}/messages/", payload, format="json"))
    assert TicketMessage.objects.filter(ticket=theirs).count() == 1


def test_retry_another_tenants_failed_reply(client_a, theirs):
    failed = add_message(
        theirs,
        direction=Direction.OUTBOUND,
        body="Tenant B's reply",
        delivery_status=DeliveryStatus.FAILED,
        delivery_error="rejected",
    )
    _assert_not_found(client_a.post(f"/api/v1/tickets/{theirs.id}/messages/{failed.id}/retry/"))
    failed.refresh_from_db()
    assert failed.delivery_status == DeliveryStatus.FAILED


def test_unknown_id_looks_the_same(client_a, theirs):
    missing = Ticket.objects.order_by("-id").first().id + 1000
    _assert_not_found(client_a.get(f"/api/v1/tickets/{missing}/"))


def test_list_and_stats_never_count_another_tenant(client_a, theirs):
    assert client_a.get("/api/v1/tickets/").json()["results"] == []
    stats = client_a.get("/api/v1/tickets/stats/").json()
    assert stats["total"] == 0 and stats["by_status"]["OPEN"] == 0


def test_ai_help_on_another_tenants_ticket_or_message(client_a, theirs, ai_gateway):
    message = theirs.messages.get()
    _assert_not_found(client_a.post(f"/api/v1/tickets/{theirs.id}/draft-reply"))
    _assert_not_found(
        client_a.post(f"/api/v1/tickets/{theirs.id}/messages/{message.id}/translate", {"to": "en"}, format="json")
    )
    assert ai_gateway.requests == []
