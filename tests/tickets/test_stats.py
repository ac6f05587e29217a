from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.tickets.factories import add_message, make_ticket
from tickets.delivery import replies_send_due
from tickets.ingest import InboundMessage, inbound_messages_file
from tickets.models import DeliveryStatus, Direction, Ticket, TicketStatus


def test_stats_for_the_inbox_header(admin, agent, agent_client):
    now = timezone.now()
    tenant = admin.tenant
    # Waiting 40 h: two buyer messages since the last live reply, the first one counts.
    oldest = make_ticket(tenant, at=now - timedelta(hours=50), assignee=agent.user)
    add_message(oldest, direction=Direction.OUTBOUND, body="Hi", at=now - timedelta(hours=45))
    add_message(oldest, body="Hello?", at=now - timedelta(hours=40))
    add_message(oldest, body="Anyone?", at=now - timedelta(hours=30))
    # A failed reply is no answer: waiting 35 h.
    failed = make_ticket(tenant, at=now - timedelta(hours=35), status=TicketStatus.PENDING)
    add_message(
        failed,
        direction=Direction.OUTBOUND,
        body="x",
        at=now - timedelta(hours=34),
        delivery_status=DeliveryStatus.FAILED,
    )
    make_ticket(tenant, at=now - timedelta(hours=1))  # unanswered, not yet due
    answered = make_ticket(tenant, at=now - timedelta(hours=60))
    add_message(answered, direction=Direction.OUTBOUND, body="Done", at=now - timedelta(hours=59))
    make_ticket(tenant, at=now - timedelta(hours=80), status=TicketStatus.RESOLVED)
    make_ticket(tenant, status=TicketStatus.CLOSED)

    with CaptureQueriesContext(connection) as queries:
        response = agent_client.get("/api/v1/tickets/stats/")
    assert response.status_code == 200
    assert len(queries) <= 5  # the token's membership + four: counts, unanswered, the earliest due, the oldest wait

    stats = response.json()
    assert stats["by_status"] == {"OPEN": 3, "PENDING": 1, "RESOLVED": 1, "CLOSED": 1}
    assert stats["total"] == 6
    assert stats["unanswered"] == 3
    assert stats["overdue"] == 2
    assert stats["unassigned"] == 3
    assert stats["assigned_to_me"] == 1
    assert stats["oldest_unanswered_ticket_id"] == oldest.id
    assert 40 * 3600 - 60 <= stats["oldest_unanswered_age_seconds"] <= 40 * 3600 + 60


def test_stats_of_an_empty_inbox(agent_client):
    stats = agent_client.get("/api/v1/tickets/stats/").json()
    assert stats["total"] == 0
    assert stats["oldest_unanswered_since"] is None
    assert stats["oldest_unanswered_age_seconds"] is None


def test_the_unanswered_figures_follow_every_write_that_answers_or_unanswers(admin, admin_client, settings):
    """The reply times are kept on the ticket by the writes: a reply answers, a reply refused for
    good unanswers, sending it again answers again, and a buyer's follow-up unanswers."""
    settings.AMAZON_USE_MOCK = True
    settings.TICKETS_AMAZON_ADAPTER = ""
    ticket = make_ticket(admin.tenant, at=timezone.now() - timedelta(hours=2), connection_id=uuid.uuid4())

    def unanswered() -> int:
        return admin_client.get("/api/v1/tickets/stats/").json()["unanswered"]

    assert unanswered() == 1
    reply = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "On its way [mock-reject]"}, format="json"
    ).json()
    assert unanswered() == 0
    replies_send_due()  # the channel refuses it for good
    assert unanswered() == 1
    assert admin_client.post(f"/api/v1/tickets/{ticket.id}/messages/{reply['id']}/retry/").status_code == 200
    assert unanswered() == 0
    with transaction.atomic():
        inbound_messages_file(
            tenant_id=admin.tenant.id,
            connection_id=ticket.connection_id,
            channel=ticket.channel,
            messages=[
                InboundMessage(
                    external_message_id=990001, thread_key=ticket.thread_key, sent_at=timezone.now(), body="?"
                )
            ],
        )
    assert unanswered() == 1
    assert Ticket.objects.count() == 1  # the follow-up landed on the same ticket
