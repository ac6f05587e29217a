"""Amazon's content rules, before a reply is queued: a reply Amazon would refuse answers 422 with the
exact passages to change, unless the agent sends it anyway (recorded on the message); notes are
never checked."""

from __future__ import annotations

import pytest

from tests.tickets.factories import make_ticket
from tickets.models import Direction, TicketMessage

pytestmark = pytest.mark.django_db

FLAGGED = "Call us on +49 30 1234567 or write to help@acme-store.com, or see <b>acme-store.com/returns</b>."


def post(client, ticket, body: str, **extra):
    return client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"body": body, **extra}, format="json")


def test_a_reply_amazon_would_refuse_is_not_queued_and_says_what_to_change(admin_client, admin):
    ticket = make_ticket(admin.tenant)

    response = post(admin_client, ticket, FLAGGED)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "reply_policy_violation"
    found = [(v["rule"], v["text"]) for v in body["details"]["violations"]]
    assert found == [
        ("phone_number", "+49 30 1234567"),
        ("email_address", "help@acme-store.com"),
        ("html", "<b>"),
        ("link", "acme-store.com/returns"),
        ("html", "</b>"),
    ]
    for violation in body["details"]["violations"]:
        assert FLAGGED[violation["start"] : violation["end"]] == violation["text"]
        assert violation["message"]
    assert "+49 30 1234567" in body["message"]
    assert not TicketMessage.objects.filter(ticket=ticket, direction=Direction.OUTBOUND).exists()
    ticket.refresh_from_db()
    assert ticket.response_due_at is not None  # nothing answered the buyer


def test_the_agent_may_send_it_anyway_and_that_is_recorded(admin_client, admin):
    ticket = make_ticket(admin.tenant)

    response = post(admin_client, ticket, FLAGGED, acknowledgeViolations=True)

    assert response.status_code == 201, response.content
    acknowledged = response.json()["acknowledged_violations"]
    assert [v["rule"] for v in acknowledged] == ["phone_number", "email_address", "html", "link", "html"]
    message = TicketMessage.objects.get(pk=response.json()["id"])
    assert message.acknowledged_violations == acknowledged
    assert message.delivery_status == "QUEUED"
    detail = admin_client.get(f"/api/v1/tickets/{ticket.id}/").json()
    assert detail["messages"][-1]["acknowledged_violations"] == acknowledged


def test_order_ids_asins_tracking_numbers_prices_and_amazon_links_pass(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    body = (
        "Hello, your order 302-1234567-1234567 (ASIN B0C7K2M9QX, 29,99 €) left on 03.12.2026 with DHL, "
        "tracking 00340434161234567890. Details: https://www.amazon.de/gp/your-account/order-history"
    )

    response = post(admin_client, ticket, body)

    assert response.status_code == 201, response.content
    assert response.json()["acknowledged_violations"] == []


def test_notes_are_not_checked(admin_client, admin):
    ticket = make_ticket(admin.tenant)

    response = post(admin_client, ticket, "Buyer called from +49 30 1234567", type="note")

    assert response.status_code == 201
    assert response.json()["origin"] == "keybuzz"
