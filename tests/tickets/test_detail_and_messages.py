from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.tickets.factories import add_message, make_ticket
from tickets.models import DeliveryStatus, Direction, TicketMessage, TicketStatus


def detail_url(ticket) -> str:
    return f"/api/v1/tickets/{ticket.id}/"


def messages_url(ticket) -> str:
    return f"/api/v1/tickets/{ticket.id}/messages/"


def overdue_ids(client) -> set[int]:
    return {row["id"] for row in client.get("/api/v1/tickets/", {"overdue": "true"}).json()["results"]}


def test_detail_shows_the_messages_in_order(admin, admin_client):
    now = timezone.now()
    ticket = make_ticket(admin.tenant, inbound="First question", at=now - timedelta(hours=3))
    add_message(
        ticket,
        direction=Direction.NOTE,
        body="Check stock",
        at=now - timedelta(hours=2),
        author=admin.user,
        author_name="Ann",
    )
    add_message(
        ticket,
        direction=Direction.OUTBOUND,
        body="In stock, shipping today",
        at=now - timedelta(hours=1),
        author=admin.user,
        author_name="Ann",
    )
    add_message(ticket, body="Thanks!", at=now - timedelta(minutes=10))

    response = admin_client.get(detail_url(ticket))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == ticket.id and body["thread_key"] == ticket.thread_key
    messages = body["messages"]
    assert [m["body"] for m in messages] == ["First question", "Check stock", "In stock, shipping today", "Thanks!"]
    assert [m["direction"] for m in messages] == ["INBOUND", "NOTE", "OUTBOUND", "INBOUND"]
    assert messages[2]["author"]["id"] == admin.user.id
    assert messages[2]["delivery"]["status"] == "SENT"
    assert messages[0]["delivery"] is None and messages[1]["delivery"] is None
    assert messages[0]["sent_at"]


def test_reply_is_queued_and_stops_the_response_clock(agent, agent_client):
    ticket = make_ticket(agent.tenant, at=timezone.now() - timedelta(hours=30))
    assert overdue_ids(agent_client) == {ticket.id}

    response = agent_client.post(messages_url(ticket), {"body": "  Your parcel left today.  "}, format="json")

    assert response.status_code == 201, response.content
    reply = response.json()
    assert reply["direction"] == "OUTBOUND"
    assert reply["body"] == "Your parcel left today."
    assert reply["author"]["id"] == agent.user.id
    assert reply["delivery"]["status"] == "QUEUED"
    assert reply["delivery"]["attempts"] == 0
    assert overdue_ids(agent_client) == set()
    row = agent_client.get(detail_url(ticket)).json()
    assert row["response_due_at"] is None
    assert row["overdue"] is False
    assert row["last_message"]["body"] == "Your parcel left today."
    assert row["last_reply_at"] is not None
    assert TicketMessage.objects.get(pk=reply["id"]).delivery_status == DeliveryStatus.QUEUED


def test_note_stays_internal_and_does_not_stop_the_clock(agent, agent_client):
    ticket = make_ticket(agent.tenant, at=timezone.now() - timedelta(hours=30))
    due = ticket.response_due_at

    response = agent_client.post(messages_url(ticket), {"type": "note", "body": "Refund approved"}, format="json")

    assert response.status_code == 201
    note = response.json()
    assert note["direction"] == "NOTE"
    assert note["delivery"] is None
    message = TicketMessage.objects.get(pk=note["id"])
    assert message.delivery_status == ""  # never picked up by send_replies
    ticket.refresh_from_db()
    assert ticket.response_due_at == due
    assert overdue_ids(agent_client) == {ticket.id}


@pytest.mark.parametrize("body", ["", "   \n\t "])
def test_empty_body_is_refused(admin, admin_client, body):
    ticket = make_ticket(admin.tenant)
    response = admin_client.post(messages_url(ticket), {"body": body}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "body_empty"
    assert not TicketMessage.objects.filter(ticket=ticket, direction=Direction.OUTBOUND).exists()


def test_missing_body_is_invalid_input(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    response = admin_client.post(messages_url(ticket), {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_over_long_body_is_refused(admin, admin_client, settings):
    settings.TICKETS_REPLY_MAX_LENGTH = 50
    ticket = make_ticket(admin.tenant)

    ok = admin_client.post(messages_url(ticket), {"body": "x" * 50}, format="json")
    too_long = admin_client.post(messages_url(ticket), {"type": "note", "body": "x" * 51}, format="json")

    assert ok.status_code == 201
    assert too_long.status_code == 400
    assert too_long.json()["code"] == "body_too_long"
    assert too_long.json()["details"]["max_length"] == 50


def test_unknown_message_type_is_refused(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    response = admin_client.post(messages_url(ticket), {"type": "sms", "body": "hi"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_a_misspelt_field_is_refused_and_nothing_reaches_the_buyer(agent, agent_client):
    """`kind` for `type`: without the check the note was silently a reply queued for the buyer."""
    ticket = make_ticket(agent.tenant, at=timezone.now() - timedelta(hours=30))
    before = set(TicketMessage.objects.filter(ticket=ticket).values_list("pk", flat=True))

    response = agent_client.post(
        messages_url(ticket), {"kind": "note", "body": "Refund approved", "attachment": [1]}, format="json"
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["message"] == "attachment: Unknown field; this takes body, type, attachments, acknowledgeViolations."
    assert sorted(body["details"]) == ["attachment", "kind"]
    assert set(TicketMessage.objects.filter(ticket=ticket).values_list("pk", flat=True)) == before
    assert overdue_ids(agent_client) == {ticket.id}  # the response clock still runs


def test_closed_ticket_takes_no_message(admin, admin_client):
    ticket = make_ticket(admin.tenant, status=TicketStatus.CLOSED)
    for payload in ({"body": "hello"}, {"type": "note", "body": "hello"}):
        response = admin_client.post(messages_url(ticket), payload, format="json")
        assert response.status_code == 409
        assert response.json()["code"] == "ticket_closed"


def test_reply_to_a_resolved_ticket_is_allowed(admin, admin_client):
    ticket = make_ticket(admin.tenant, status=TicketStatus.RESOLVED)
    assert admin_client.post(messages_url(ticket), {"body": "One more thing"}, format="json").status_code == 201
