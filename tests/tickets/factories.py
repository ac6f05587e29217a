"""Ticket factories: real rows, built the way the poller files them (ticket + INBOUND messages)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.utils import timezone

from keybuzz.models import Tenant
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus

_seq = itertools.count(1)


def make_ticket(
    tenant: Tenant,
    *,
    inbound: str | None = "Where is my parcel?",
    at: datetime | None = None,
    due_in: timedelta | None = timedelta(hours=24),
    **fields,
) -> Ticket:
    """A ticket with one buyer message sent `at` (default now) and a response due `due_in` later."""
    n = next(_seq)
    at = at or timezone.now()
    fields.setdefault("thread_key", f"thread-{n}")
    fields.setdefault("subject", f"Question about order {n}")
    fields.setdefault("customer_name", f"Buyer {n}")
    fields.setdefault("customer_ref", f"buyer{n}@marketplace.amazon.example")
    fields.setdefault("order_id", f"405-{n:07d}-0000000")
    fields.setdefault("status", TicketStatus.OPEN)
    ticket = Ticket.objects.create(
        tenant=tenant,
        last_message_at=at if inbound is not None else None,
        response_due_at=(at + due_in) if (inbound is not None and due_in is not None) else None,
        **fields,
    )
    if inbound is not None:
        add_message(ticket, body=inbound, at=at)
    return ticket


def add_message(
    ticket: Ticket,
    *,
    body: str = "Any news?",
    direction: str = Direction.INBOUND,
    at: datetime | None = None,
    author=None,
    delivery_status: str = "",
    **fields,
) -> TicketMessage:
    """A message on the ticket (INBOUND moves last_message_at, as the poller does)."""
    at = at or timezone.now()
    if direction == Direction.OUTBOUND and not delivery_status:
        delivery_status = DeliveryStatus.SENT
    message = TicketMessage.objects.create(
        tenant=ticket.tenant,
        ticket=ticket,
        direction=direction,
        body=body,
        sent_at=at,
        author=author,
        author_name=fields.pop("author_name", "" if direction == Direction.INBOUND else "agent"),
        delivery_status=delivery_status,
        **fields,
    )
    # The ticket's own times, as the poller and the reply service keep them.
    changed = []
    if direction == Direction.INBOUND:
        if ticket.last_message_at is None or ticket.last_message_at < at:
            ticket.last_message_at = at
            changed.append("last_message_at")
        if ticket.last_inbound_at is None or ticket.last_inbound_at < at:
            ticket.last_inbound_at = at
            changed.append("last_inbound_at")
    elif direction == Direction.OUTBOUND and delivery_status != DeliveryStatus.FAILED:
        if ticket.last_reply_at is None or ticket.last_reply_at < at:
            ticket.last_reply_at = at
            changed.append("last_reply_at")
    if changed:
        ticket.save(update_fields=changed)
    return message
