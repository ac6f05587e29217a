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
from django.db.models import F, Q, QuerySet

from keybuzz.db import OnConflict, insert_rows
from tickets.attachments import StoredFile
from tickets.delivery import ticket_reopen_after_failed_reply
from tickets.models import Attachment, DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus

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
    attachments: tuple[StoredFile, ...] = ()  # already in storage (tickets.attachments)


def inbound_messages_file(
    *, tenant_id: UUID | str, connection_id: UUID | str, channel: str, messages: Sequence[InboundMessage]
) -> int:
    """Find or create each message's ticket by thread key, add the messages to it, move its clock.
    Returns the number of tickets created.

    A follow-up lands on its thread's ticket and reopens it (whatever its status: the buyer is
    waiting again). The response due time is the first unanswered message's time + 24 h; an agent's
    reply clears it (tickets.services).
    """
    if not messages:
        return 0
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("inbound_messages_file must run inside the caller's transaction")

    ordered = sorted(messages, key=lambda m: (m.sent_at, m.external_message_id))
    by_thread: dict[str, list[InboundMessage]] = {}
    for message in ordered:
        by_thread.setdefault(message.thread_key, []).append(message)

    # One upsert per batch: a new thread's ticket is written in its final state; an existing one
    # (even one a concurrent poller has just created: the unique constraint decides) is reopened,
    # its last message time moves forward and an answered ticket's clock starts again.
    ticket_rows = []
    for key, thread in by_thread.items():
        first, last = thread[0], thread[-1]
        ticket_rows.append(
            {
                "thread_key": key,
                "subject": first.subject[:500],
                "customer_name": first.customer_name[:255],
                "customer_ref": first.customer_ref[:255],
                "order_id": first.order_id[:64],
                "last_message_at": last.sent_at,
                "last_inbound_at": last.sent_at,
                "response_due_at": first.sent_at + RESPONSE_TIME,
            }
        )
    filed = insert_rows(
        Ticket,
        ticket_rows,
        conflict_fields=["connection_id", "thread_key"],
        shared={
            "tenant_id": tenant_id,
            "channel": channel,
            "connection_id": connection_id,
            "status": TicketStatus.OPEN,
        },
        update={
            "status": OnConflict.NEW,
            "updated_at": OnConflict.NEW,
            "last_message_at": OnConflict.LATEST,
            "last_inbound_at": OnConflict.LATEST,
            "response_due_at": OnConflict.KEEP,
        },
        returning=["thread_key", "id", "created_at", "updated_at"],
    )
    ticket_ids = {key: pk for key, pk, _, _ in filed}
    # A new row's two timestamps are the statement's one `now`; an updated row keeps its creation time.
    created = sum(1 for _, _, created_at, updated_at in filed if created_at == updated_at)

    filed_messages = insert_rows(
        TicketMessage,
        [
            {
                "ticket_id": ticket_ids[m.thread_key],
                "author_name": m.customer_name[:255],
                "body": m.body,
                "external_message_id": m.external_message_id,
                "sent_at": m.sent_at,
            }
            for m in ordered
        ],
        shared={"tenant_id": tenant_id, "direction": Direction.INBOUND},
        conflict_fields=["external_message_id"],
        returning=["external_message_id", "id"],
    )
    with_files = [m for m in ordered if m.attachments]
    if with_files:  # one more statement, only for a batch that brought files
        message_ids = dict(filed_messages)
        insert_rows(
            Attachment,
            [
                {
                    "ticket_id": ticket_ids[m.thread_key],
                    "message_id": message_ids[m.external_message_id],
                    "filename": f.filename[:255],
                    "content_type": f.content_type[:127],
                    "size": f.size,
                    "sha256": f.sha256,
                    "storage_name": f.storage_name,
                }
                for m in with_files
                if m.external_message_id in message_ids
                for f in m.attachments
            ],
            shared={"tenant_id": tenant_id},
            conflict_fields=["id"],
            returning=["id"],
        )
    return created


# --- What a channel learns about replies after they left ------------------------------------------

# A bounce or rejection without the reply's reference is matched to the latest reply sent on the
# buyer's thread within this window before it arrived.
FAILURE_MATCH_WINDOW = timedelta(days=7)
# A copy of a reply written in the channel's own tool that repeats a KeyBuzz reply sent this close
# to it is that reply (a channel may confirm both), not a second one.
COPY_MATCH_WINDOW = timedelta(days=1)


def _thread_tickets(*, connection_id: UUID | str, thread_key: str, thread_prefix: str) -> QuerySet[Ticket]:
    """The ticket of exactly `thread_key`, else those whose key is `thread_prefix` or starts with it
    and a colon (a buyer's threads about several orders), newest activity first."""
    exact = Ticket.objects.filter(connection_id=connection_id, thread_key=thread_key)
    if thread_key and exact.exists():
        return exact
    return Ticket.objects.filter(
        Q(thread_key=thread_prefix) | Q(thread_key__startswith=f"{thread_prefix}:"), connection_id=connection_id
    ).order_by(F("last_message_at").desc(nulls_last=True), "-id")


def channel_reply_failed(
    *,
    connection_id: UUID | str,
    reason: str,
    at: datetime,
    delivery_ref: str = "",
    thread_key: str = "",
    thread_prefix: str = "",
) -> int | None:
    """The channel reports that a reply it had accepted never reached the buyer: the reply becomes
    FAILED with `reason` (agents see it and may send it again) and its ticket is unanswered again.
    Matched by the reply's reference (`delivery_ref`), else the latest reply sent on the thread
    within a week before `at`. Returns the reply's id, or None when nothing matches."""
    replies = TicketMessage.objects.filter(direction=Direction.OUTBOUND, origin="")
    reply = None
    if delivery_ref:
        reply = replies.filter(delivery_ref=delivery_ref, ticket__connection_id=connection_id).first()
    if reply is None and (thread_key or thread_prefix):
        tickets = _thread_tickets(connection_id=connection_id, thread_key=thread_key, thread_prefix=thread_prefix)
        reply = (
            replies.filter(
                ticket__in=tickets[:10],
                delivery_status=DeliveryStatus.SENT,
                delivered_at__lte=at,
                delivered_at__gte=at - FAILURE_MATCH_WINDOW,
            )
            .order_by("-delivered_at", "-id")
            .first()
        )
    if reply is None:
        return None
    if reply.delivery_status != DeliveryStatus.FAILED:
        TicketMessage.objects.filter(pk=reply.pk).update(
            delivery_status=DeliveryStatus.FAILED,
            delivery_error=reason[:2000],
            next_attempt_at=None,
            delivery_worker="",
            send_started_at=None,
        )
        ticket_reopen_after_failed_reply(message=reply)
    return reply.pk


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def channel_reply_copy_file(
    *,
    tenant_id: UUID | str,
    connection_id: UUID | str,
    body: str,
    sent_at: datetime,
    origin: str,
    author_name: str = "",
    reference: str = "",
    thread_key: str = "",
    thread_prefix: str = "",
) -> int | None:
    """A reply written in the channel's own tool (Amazon's Seller Central) joins its ticket as an
    OUTBOUND message marked with `origin`, already delivered, and stops the response clock when it
    answers the latest buyer message. A copy of a KeyBuzz reply is that reply, not a new one.
    Returns the message's id, or None when no ticket matches the thread."""
    ticket = (
        _thread_tickets(connection_id=connection_id, thread_key=thread_key, thread_prefix=thread_prefix)
        .select_for_update()
        .first()
    )
    if ticket is None:
        return None
    near = ticket.messages.filter(
        direction=Direction.OUTBOUND, sent_at__range=(sent_at - COPY_MATCH_WINDOW, sent_at + COPY_MATCH_WINDOW)
    )
    for pk, text in near.values_list("id", "body"):
        if _same_text(text, body):
            return int(pk)
    message = TicketMessage.objects.create(
        tenant_id=tenant_id,
        ticket=ticket,
        direction=Direction.OUTBOUND,
        origin=origin,
        author_name=author_name[:255],
        body=body,
        sent_at=sent_at,
        delivery_status=DeliveryStatus.SENT,
        delivered_at=sent_at,
        delivery_ref=reference[:255],
    )
    fields = []
    if ticket.last_reply_at is None or ticket.last_reply_at < sent_at:
        ticket.last_reply_at = sent_at
        fields.append("last_reply_at")
    last_inbound = ticket.last_inbound_at
    if ticket.response_due_at is not None and (last_inbound is None or last_inbound <= sent_at):
        ticket.response_due_at = None  # the buyer has an answer, from whichever tool
        fields.append("response_due_at")
    if ticket.last_message_at is None or ticket.last_message_at < sent_at:
        ticket.last_message_at = sent_at
        fields.append("last_message_at")
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])
    return message.pk


def ticket_order_context_set(
    *, connection_id: UUID | str, order_id: str, context: dict[str, object], fetched_at: datetime
) -> int:
    """The channel's description of an order (plain JSON: status, items, packages…) goes on every
    ticket of the connection about that order. Returns the number of tickets updated."""
    return Ticket.objects.filter(connection_id=connection_id, order_id=order_id).update(
        order_context=context, order_context_at=fetched_at
    )
