"""State-changing ticket operations of agents: replies and notes, a failed reply sent again, status
and assignee changes. (The delivery of queued replies is `tickets.delivery`.)

Status transitions (anything else answers 409 `invalid_transition`; setting the current status
again is a no-op):

    OPEN     → PENDING, RESOLVED, CLOSED
    PENDING  → OPEN, RESOLVED, CLOSED
    RESOLVED → OPEN, CLOSED
    CLOSED   → OPEN                     (reopen)

Roles: owners and admins may do everything. Agents may read, reply, write notes, move tickets
between OPEN, PENDING and RESOLVED, take a ticket (assign it to themselves) and release a ticket
that is theirs or nobody's. Closing, reopening a CLOSED ticket, assigning someone else and
unassigning someone else need the admin role (403 `role_forbidden`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from keybuzz.errors import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from keybuzz.models import Membership, Tenant
from keybuzz.selectors import member_get
from tickets import conf
from tickets.channels import channel_reply_violations
from tickets.models import Attachment, DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus

S = TicketStatus
TRANSITIONS: dict[str, frozenset[str]] = {
    S.OPEN: frozenset({S.PENDING, S.RESOLVED, S.CLOSED}),
    S.PENDING: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset({S.OPEN}),
}


class Unset(enum.Enum):
    UNSET = "unset"


UNSET = Unset.UNSET


class MessageKind(enum.StrEnum):
    REPLY = "reply"
    NOTE = "note"


def _ticket_for_update(*, tenant: Tenant, ticket_id: int) -> Ticket:
    ticket = Ticket.objects.select_for_update().filter(tenant=tenant, pk=ticket_id).first()
    if ticket is None:
        raise NotFoundError("No such ticket.")
    return ticket


def _role_forbidden(message: str) -> ForbiddenError:
    return ForbiddenError(message, code="role_forbidden")


@transaction.atomic
def ticket_update(
    *,
    tenant: Tenant,
    ticket_id: int,
    actor: Membership,
    status: str | None = None,
    assignee_id: int | Unset | None = UNSET,
) -> Ticket:
    """Change a ticket's status and/or assignee (`assignee_id=None` unassigns)."""
    ticket = _ticket_for_update(tenant=tenant, ticket_id=ticket_id)
    fields: list[str] = []

    if status is not None and status != ticket.status:
        if status not in TRANSITIONS.get(ticket.status, frozenset()):
            allowed = sorted(TRANSITIONS.get(ticket.status, frozenset()))
            raise ConflictError(
                f"A {ticket.status} ticket cannot become {status}; allowed: {', '.join(allowed) or 'none'}.",
                code="invalid_transition",
                details={"from": ticket.status, "to": status, "allowed": allowed},
            )
        if not actor.is_admin and S.CLOSED in (status, ticket.status):
            raise _role_forbidden("Closing or reopening a closed ticket needs the owner or admin role.")
        ticket.status = status
        fields.append("status")

    if assignee_id is not UNSET and assignee_id != ticket.assignee_id:
        if not actor.is_admin:
            taking = assignee_id == actor.user_id
            releasing_own = assignee_id is None and ticket.assignee_id == actor.user_id
            if not (taking or releasing_own):
                raise _role_forbidden("Agents can only assign tickets to themselves or release their own.")
        if assignee_id is not None and member_get(tenant=tenant, user_id=assignee_id) is None:
            raise ApplicationError("The assignee must be an active member of this tenant.", code="invalid_assignee")
        ticket.assignee_id = assignee_id
        fields.append("assignee")

    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])
    return ticket


def _clean_body(body: str) -> str:
    text = body.strip()
    if not text:
        raise ApplicationError("The message body is empty.", code="body_empty")
    limit = conf.reply_max_length()
    if len(text) > limit:
        raise ApplicationError(
            f"The message body is longer than {limit} characters.",
            code="body_too_long",
            details={"max_length": limit, "length": len(text)},
        )
    return text


def _uploads_take(*, tenant: Tenant, ticket: Ticket, attachment_ids: Sequence[int]) -> list[Attachment]:
    """Locks the agent's uploads a reply names: this ticket's, not sent with another reply yet."""
    ids = list(dict.fromkeys(attachment_ids))
    limit = conf.reply_max_attachments()
    if len(ids) > limit:
        raise ApplicationError(
            f"A reply may carry at most {limit} files.",
            code="too_many_attachments",
            details={"max_attachments": limit, "count": len(ids)},
        )
    found = {a.pk: a for a in Attachment.objects.select_for_update().filter(tenant=tenant, ticket=ticket, pk__in=ids)}
    missing = [pk for pk in ids if pk not in found]
    if missing:  # another tenant's or another ticket's ids answer like ids that do not exist
        raise NotFoundError(
            "No such upload on this ticket.", code="attachment_not_found", details={"attachments": missing}
        )
    taken = [pk for pk in ids if found[pk].message_id is not None]
    if taken:
        raise ConflictError(
            "These files already belong to a message; upload them again to send them once more.",
            code="attachment_already_sent",
            details={"attachments": taken},
        )
    return [found[pk] for pk in ids]


@transaction.atomic
def ticket_message_create(
    *,
    tenant: Tenant,
    ticket_id: int,
    author: User,
    body: str,
    kind: MessageKind = MessageKind.REPLY,
    attachment_ids: Sequence[int] = (),
    acknowledge_violations: bool = False,
    origin: str = "",
    channel_action: str = "",
    now: datetime | None = None,
) -> TicketMessage:
    """An agent's reply (queued for delivery; stops the response clock) or internal note (stays here).

    A reply is checked against its channel's content rules first: what they flag is refused with
    422 `reply_policy_violation` (details.violations: rule, text, start, end), unless the agent
    sends it anyway (`acknowledge_violations`, recorded on the message). It may carry the agent's
    uploads on the ticket (`attachment_ids`). A channel's structured message (`channel_action`,
    written through the channel's own tool: `origin`) is queued and delivered like any reply."""
    text = _clean_body(body)
    if kind == MessageKind.NOTE and attachment_ids:
        raise ApplicationError("Files go with replies, not with notes.", code="invalid_input")
    ticket = _ticket_for_update(tenant=tenant, ticket_id=ticket_id)
    if ticket.status == S.CLOSED:
        raise ConflictError("The ticket is closed; reopen it first.", code="ticket_closed")
    now = now or timezone.now()
    author_name = author.get_full_name() or author.get_username()

    if kind == MessageKind.NOTE:
        return TicketMessage.objects.create(
            tenant=tenant,
            ticket=ticket,
            direction=Direction.NOTE,
            author=author,
            author_name=author_name,
            body=text,
            sent_at=now,
        )

    violations = [asdict(v) for v in channel_reply_violations(ticket.channel, text)]
    if violations and not acknowledge_violations:
        raise ApplicationError(
            f"The {ticket.get_channel_display()} marketplace would refuse this reply: "
            + "; ".join(v["message"] or f"{v['rule']}: {v['text']}" for v in violations[:5])
            + ". Change it, or send it anyway with acknowledgeViolations.",
            code="reply_policy_violation",
            status_code=422,
            details={"violations": violations},
        )
    uploads = _uploads_take(tenant=tenant, ticket=ticket, attachment_ids=attachment_ids)
    message = TicketMessage.objects.create(
        tenant=tenant,
        ticket=ticket,
        direction=Direction.OUTBOUND,
        author=author,
        author_name=author_name,
        body=text,
        sent_at=now,
        delivery_status=DeliveryStatus.QUEUED,
        next_attempt_at=now,
        stopped_response_due_at=ticket.response_due_at,
        acknowledged_violations=violations,
        origin=origin,
        channel_action=channel_action,
    )
    if uploads:
        Attachment.objects.filter(pk__in=[a.pk for a in uploads]).update(message=message)
    # The buyer has an answer: the response clock stops (a later buyer message starts it again).
    ticket.response_due_at = None
    if ticket.last_message_at is None or ticket.last_message_at < now:
        ticket.last_message_at = now
    if ticket.last_reply_at is None or ticket.last_reply_at < now:
        ticket.last_reply_at = now
    ticket.save(update_fields=["response_due_at", "last_message_at", "last_reply_at", "updated_at"])
    return message


@transaction.atomic
def reply_retry(*, tenant: Tenant, ticket_id: int, message_id: int, now: datetime | None = None) -> TicketMessage:
    """Queues a FAILED reply again, for a fresh round of attempts (an agent's "send again" once the
    cause is fixed). The reply is live again, so the ticket's response clock stops as it did when
    the reply was written."""
    ticket = _ticket_for_update(tenant=tenant, ticket_id=ticket_id)
    message = (
        TicketMessage.objects.select_for_update()
        .filter(tenant=tenant, ticket=ticket, pk=message_id, direction=Direction.OUTBOUND)
        .first()
    )
    if message is None:
        raise NotFoundError("No such reply on this ticket.")
    if message.delivery_status != DeliveryStatus.FAILED:
        raise ConflictError(
            f"Only a FAILED reply can be sent again; this one is {message.delivery_status}.",
            code="reply_not_failed",
            details={"delivery_status": message.delivery_status},
        )
    if ticket.status == S.CLOSED:
        raise ConflictError("The ticket is closed; reopen it first.", code="ticket_closed")
    now = now or timezone.now()
    message.delivery_status = DeliveryStatus.QUEUED
    message.delivery_attempts = 0
    message.next_attempt_at = now
    message.delivery_error = ""
    message.send_started_at = None  # the agent decided: an uncertain delivery is to be made again
    message.stopped_response_due_at = ticket.response_due_at
    message.save(
        update_fields=[
            "delivery_status",
            "delivery_attempts",
            "next_attempt_at",
            "delivery_error",
            "send_started_at",
            "stopped_response_due_at",
        ]
    )
    fields = []
    if ticket.response_due_at is not None:
        ticket.response_due_at = None
        fields.append("response_due_at")
    if ticket.last_reply_at is None or ticket.last_reply_at < message.sent_at:  # the reply is live again
        ticket.last_reply_at = message.sent_at
        fields.append("last_reply_at")
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])
    return message
