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

from keybuzz.db import insert_ignoring_conflicts, update_from_values
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
    by_thread: dict[str, list[InboundMessage]] = {}
    for message in ordered:
        by_thread.setdefault(message.thread_key, []).append(message)
    now = timezone.now()

    tickets = {t.thread_key: t for t in Ticket.objects.filter(connection_id=connection_id,
                                                             thread_key__in=list(by_thread))
               .only("id", "thread_key", "status", "last_message_at", "response_due_at")}
    created = 0
    new_rows: dict[str, Ticket] = {}
    missing = [key for key in by_thread if key not in tickets]
    if missing:
        # New tickets are written with their final state, so only existing ones need an UPDATE.
        for key in missing:
            first, last = by_thread[key][0], by_thread[key][-1]
            new_rows[key] = Ticket(
                tenant_id=tenant_id, channel=channel, connection_id=connection_id, thread_key=key,
                subject=first.subject[:500], customer_name=first.customer_name[:255],
                customer_ref=first.customer_ref[:255], order_id=first.order_id[:64], status=TicketStatus.OPEN,
                last_message_at=last.sent_at, response_due_at=first.sent_at + RESPONSE_TIME,
            )
        # A concurrent poller may create the same thread's ticket: the unique constraint decides,
        # and the loser treats the winner's row as an existing ticket.
        inserted = insert_ignoring_conflicts(list(new_rows.values()), conflict_fields=["connection", "thread_key"],
                                             returning=["id", "thread_key"])
        for pk, key in inserted:
            new_rows[key].id = pk
        created = len(inserted)
        lost = [key for key in missing if new_rows[key].id is None]
        if lost:
            tickets.update({t.thread_key: t for t in Ticket.objects.filter(connection_id=connection_id,
                                                                          thread_key__in=lost)})

    existing = [tickets[key] for key in by_thread if key in tickets]
    for ticket in existing:
        thread = by_thread[ticket.thread_key]
        ticket.last_message_at = max(filter(None, [ticket.last_message_at, thread[-1].sent_at]))
        if ticket.response_due_at is None:  # answered until now: the clock starts again
            ticket.response_due_at = thread[0].sent_at + RESPONSE_TIME
        ticket.status = TicketStatus.OPEN  # the buyer is waiting again, whatever the status was
        ticket.updated_at = now
    update_from_values(Ticket, [t.__dict__ for t in existing],
                       fields=["status", "last_message_at", "response_due_at", "updated_at"])

    ticket_ids = {key: (tickets[key] if key in tickets else new_rows[key]).id for key in by_thread}
    insert_ignoring_conflicts(
        [TicketMessage(tenant_id=tenant_id, ticket_id=ticket_ids[m.thread_key], direction=Direction.INBOUND,
                       author_name=m.customer_name[:255], body=m.body, external_message_id=m.external_message_id,
                       sent_at=m.sent_at)
         for m in ordered],
        conflict_fields=["external_message"], returning=["id"],
    )
    return InboundResult(tickets_created=created,
                         ticket_by_message={m.external_message_id: ticket_ids[m.thread_key] for m in ordered})
