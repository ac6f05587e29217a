"""Filing inbound marketplace messages as tickets: the one door from `marketplaces` into `tickets`.

Runs inside the caller's transaction (the poller commits the messages, the tickets and its cursor
together) and costs a constant number of queries whatever the number of messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from keybuzz.db import insert_ignoring_conflicts
from tickets.models import Direction, Ticket, TicketMessage, TicketStatus

# Amazon expects sellers to answer buyer messages within 24 hours.
RESPONSE_TIME = timedelta(hours=24)


@dataclass(frozen=True)
class InboundMessage:
    external_message_id: int
    thread_key: str
    sent_at: datetime
    body: str
    subject: str = ""
    order_id: str = ""
    customer_name: str = ""
    customer_ref: str = ""


@dataclass(frozen=True)
class InboundResult:
    tickets_created: int
    ticket_by_message: dict[int, int]  # external_message_id → ticket id


def inbound_messages_file(*, tenant_id: UUID, connection_id: UUID, channel: str,
                          messages: Sequence[InboundMessage]) -> InboundResult:
    """Find or create each message's ticket by thread key, add the messages to it, move its clock.

    A follow-up lands on its thread's ticket and reopens it (whatever its status: the buyer is
    waiting again). The response due time is the first unanswered message's time + 24 h; an agent's
    reply clears it (tickets.services).
    """
    if not messages:
        return InboundResult(tickets_created=0, ticket_by_message={})
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("inbound_messages_file must run inside the caller's transaction")

    ordered = sorted(messages, key=lambda m: (m.sent_at, m.external_message_id))
    first_by_thread: dict[str, InboundMessage] = {}
    for message in ordered:
        first_by_thread.setdefault(message.thread_key, message)

    tickets = {t.thread_key: t for t in Ticket.objects.filter(connection_id=connection_id,
                                                             thread_key__in=list(first_by_thread))}
    missing = [first_by_thread[key] for key in first_by_thread if key not in tickets]
    created_ids: set[int] = set()
    if missing:
        # A concurrent poller may create the same thread's ticket: the unique constraint decides,
        # and the loser reads the winner's row below.
        new_rows = [
            Ticket(tenant_id=tenant_id, channel=channel, connection_id=connection_id, thread_key=m.thread_key,
                   subject=m.subject[:500], customer_name=m.customer_name[:255],
                   customer_ref=m.customer_ref[:255], order_id=m.order_id[:64], status=TicketStatus.OPEN)
            for m in missing
        ]
        created_ids = {row[0] for row in insert_ignoring_conflicts(
            new_rows, conflict_fields=["connection", "thread_key"], returning=["id"])}
        tickets.update({t.thread_key: t for t in Ticket.objects.filter(
            connection_id=connection_id, thread_key__in=[m.thread_key for m in missing])})

    now = timezone.now()
    ticket_messages = []
    ticket_by_message: dict[int, int] = {}
    for message in ordered:
        ticket = tickets[message.thread_key]
        ticket_by_message[message.external_message_id] = ticket.id
        ticket_messages.append(TicketMessage(
            tenant_id=tenant_id, ticket_id=ticket.id, direction=Direction.INBOUND,
            author_name=message.customer_name[:255], body=message.body,
            external_message_id=message.external_message_id, sent_at=message.sent_at,
        ))
        if ticket.last_message_at is None or message.sent_at > ticket.last_message_at:
            ticket.last_message_at = message.sent_at
        if ticket.response_due_at is None:
            ticket.response_due_at = message.sent_at + RESPONSE_TIME
        ticket.status = TicketStatus.OPEN
        ticket.updated_at = now

    TicketMessage.objects.bulk_create(ticket_messages)
    touched = list({tickets[m.thread_key].id: tickets[m.thread_key] for m in ordered}.values())
    Ticket.objects.bulk_update(touched, ["status", "last_message_at", "response_due_at", "updated_at"])
    return InboundResult(tickets_created=len(created_ids), ticket_by_message=ticket_by_message)
