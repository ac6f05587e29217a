from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.tickets.factories import add_message, make_ticket
from tickets.models import DeliveryStatus, Direction, TicketStatus


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
    assert len(queries) <= 4  # the token's membership + three

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
