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

from keybuzz.db import OnConflict, insert_rows
from tickets.attachments import StoredFile
from tickets.models import Attachment, Direction, Ticket, TicketMessage, TicketStatus

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
