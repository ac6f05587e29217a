"""State-changing ticket operations: agents' replies and notes, status and assignee changes, and the
delivery of queued replies through the ticket's channel (the `send_replies` worker).

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
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from keybuzz.errors import ApplicationError, ConflictError, ForbiddenError, NotFoundError
from keybuzz.logging import log_context
from keybuzz.models import Membership, Tenant
from keybuzz.selectors import member_get
from tickets import conf
from tickets.channels import ChannelAdapter, ChannelError, channel_adapter
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus

logger = logging.getLogger("tickets.delivery")

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


@transaction.atomic
def ticket_message_create(
    *,
    tenant: Tenant,
    ticket_id: int,
    author: AbstractBaseUser,
    body: str,
    kind: MessageKind = MessageKind.REPLY,
    now: datetime | None = None,
) -> TicketMessage:
    """An agent's reply (queued for delivery; stops the response clock) or internal note (stays here)."""
    text = _clean_body(body)
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
    )
    # The buyer has an answer: the response clock stops (a later buyer message starts it again).
    ticket.response_due_at = None
    if ticket.last_message_at is None or ticket.last_message_at < now:
        ticket.last_message_at = now
    ticket.save(update_fields=["response_due_at", "last_message_at", "updated_at"])
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
    message.stopped_response_due_at = ticket.response_due_at
    message.save(
        update_fields=[
            "delivery_status",
            "delivery_attempts",
            "next_attempt_at",
            "delivery_error",
            "stopped_response_due_at",
        ]
    )
    if ticket.response_due_at is not None:
        ticket.response_due_at = None
        ticket.save(update_fields=["response_due_at", "updated_at"])
    return message


# --- Delivery ---------------------------------------------------------------------------------


@dataclass
class SendSummary:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0  # failed this time, another attempt is scheduled
    failed: int = 0  # failed for good (FAILED)
    lost: int = 0  # another worker took the reply over (lease expired) before this one finished
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.retrying == 0 and self.failed == 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class _Claim:
    message_id: int
    attempt: int


def replies_claim(*, now: datetime, limit: int) -> list[_Claim]:
    """Take up to `limit` due QUEUED replies for this worker, in a short transaction of its own.

    On PostgreSQL the rows are locked with SKIP LOCKED, so concurrent workers claim disjoint sets;
    the claim itself is a lease (next_attempt_at pushed forward, attempt counted) that lets another
    worker retry the reply if this one dies before finishing.
    """
    lease_until = now + conf.send_lease()
    with transaction.atomic():
        due = (
            TicketMessage.objects.filter(direction=Direction.OUTBOUND, delivery_status=DeliveryStatus.QUEUED)
            .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
            .order_by(F("next_attempt_at").asc(nulls_first=True), "id")
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values_list("id", "delivery_attempts")[:limit])
        if rows:
            TicketMessage.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                delivery_attempts=F("delivery_attempts") + 1, next_attempt_at=lease_until
            )
    return [_Claim(message_id=pk, attempt=attempts + 1) for pk, attempts in rows]


def _still_ours(claim: _Claim):
    # The conditional update is the lease check: a worker that took the reply over after our lease
    # expired has counted another attempt, so our late result no longer matches and is dropped.
    return TicketMessage.objects.filter(
        pk=claim.message_id, delivery_status=DeliveryStatus.QUEUED, delivery_attempts=claim.attempt
    )


def _reply_failed_for_good(*, message: TicketMessage) -> None:
    """A reply will never reach the buyer: unless another reply answered them, the ticket is
    unanswered again — its response clock resumes and it goes back to OPEN so agents see it."""
    ticket = Ticket.objects.select_for_update().get(pk=message.ticket_id)
    last_inbound = ticket.messages.filter(direction=Direction.INBOUND).aggregate(at=Max("sent_at"))["at"]
    live_replies = ticket.messages.filter(direction=Direction.OUTBOUND).exclude(delivery_status=DeliveryStatus.FAILED)
    if last_inbound is not None:
        live_replies = live_replies.filter(sent_at__gte=last_inbound)
    if live_replies.exists():
        return
    fields = []
    due_times = [due for due in (ticket.response_due_at, message.stopped_response_due_at) if due is not None]
    if last_inbound is not None and due_times and min(due_times) != ticket.response_due_at:
        ticket.response_due_at = min(due_times)
        fields.append("response_due_at")
    if ticket.status != S.OPEN:
        ticket.status = S.OPEN
        fields.append("status")
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])


def _deliver(claim: _Claim, *, now: datetime, adapters: dict[str, ChannelAdapter], summary: SendSummary) -> None:
    message = TicketMessage.objects.select_related("ticket").filter(pk=claim.message_id).first()
    if message is None:  # the ticket was deleted meanwhile
        summary.lost += 1
        return
    # Every line logged while sending this reply carries its tenant and marketplace connection ids.
    with log_context(tenant_id=message.ticket.tenant_id, connection_id=message.ticket.connection_id):
        _send(claim, message, now=now, adapters=adapters, summary=summary)


def _send(
    claim: _Claim, message: TicketMessage, *, now: datetime, adapters: dict[str, ChannelAdapter], summary: SendSummary
) -> None:
    ticket = message.ticket
    if ticket.channel not in adapters:
        adapters[ticket.channel] = channel_adapter(ticket.channel)
    adapter = adapters[ticket.channel]
    max_attempts = conf.send_max_attempts()
    where = f"reply {message.pk} on ticket {ticket.pk} for tenant {ticket.tenant_id}"

    # No transaction is open here: the channel may take seconds to answer.
    try:
        result = adapter.send_reply(ticket, message)
    except ChannelError as exc:
        reason, retry = str(exc) or type(exc).__name__, exc.retryable
    except Exception as exc:  # a bug or an unwrapped library error: retried, never fatal to the run
        reason, retry = f"Unexpected {type(exc).__name__} in the {adapter.name} channel", True
    else:
        updated = _still_ours(claim).update(
            delivery_status=DeliveryStatus.SENT,
            delivered_at=result.sent_at or timezone.now(),
            delivery_ref=result.external_id[:255],
            delivery_error="",
            next_attempt_at=None,
        )
        if updated:
            summary.sent += 1
            logger.info("[Reply Sender] Sent %s via %s (attempt %d)", where, adapter.name, claim.attempt)
        else:
            summary.lost += 1
            logger.warning("[Reply Sender] Sent %s but its lease had expired", where)
        return

    if retry and claim.attempt < max_attempts:
        next_at = now + conf.send_backoff(claim.attempt)
        if _still_ours(claim).update(delivery_error=reason, next_attempt_at=next_at):
            summary.retrying += 1
            logger.warning(
                "[Reply Sender] Send error for %s (attempt %d/%d), retry at %s: %s",
                where,
                claim.attempt,
                max_attempts,
                next_at.isoformat(timespec="seconds"),
                reason,
            )
        else:
            summary.lost += 1
        return

    with transaction.atomic():
        if not _still_ours(claim).update(
            delivery_status=DeliveryStatus.FAILED, delivery_error=reason, next_attempt_at=None
        ):
            summary.lost += 1
            return
        _reply_failed_for_good(message=message)
    summary.failed += 1
    logger.error("[Reply Sender] Send error for %s: FAILED after %d attempt(s): %s", where, claim.attempt, reason)


def replies_send_due(
    *, now: datetime | None = None, limit: int | None = None, should_stop: Callable[[], bool] = lambda: False
) -> SendSummary:
    """Send the due QUEUED replies once: claim, deliver each, record SENT / retry / FAILED."""
    started = time.monotonic()
    now = now or timezone.now()
    summary = SendSummary()
    claims = replies_claim(now=now, limit=limit or conf.send_batch_size())
    summary.claimed = len(claims)
    adapters: dict[str, ChannelAdapter] = {}
    for index, claim in enumerate(claims):
        if should_stop():
            # Give the rest back at once instead of letting their lease run out.
            rest = [c.message_id for c in claims[index:]]
            TicketMessage.objects.filter(pk__in=rest, delivery_status=DeliveryStatus.QUEUED).update(
                delivery_attempts=F("delivery_attempts") - 1, next_attempt_at=now
            )
            summary.claimed = index
            break
        _deliver(claim, now=now, adapters=adapters, summary=summary)
    summary.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "[Reply Sender] Run completed: claimed=%d sent=%d retrying=%d failed=%d lost=%d seconds=%.3f",
        summary.claimed,
        summary.sent,
        summary.retrying,
        summary.failed,
        summary.lost,
        summary.seconds,
    )
    return summary


def replies_send_loop(
    *,
    interval: float,
    stop: threading.Event,
    limit: int | None = None,
    on_run: Callable[[SendSummary], None] = lambda summary: None,
) -> None:
    """Run `replies_send_due` every `interval` seconds until `stop` is set (a signal handler sets it);
    the reply in hand is finished first."""
    while not stop.is_set():
        try:
            on_run(replies_send_due(limit=limit, should_stop=stop.is_set))
        except DatabaseError as exc:
            # The database went away for a moment: a long-running worker waits and tries again.
            logger.error("[Reply Sender] Run error: %s: %s", type(exc).__name__, exc)
        stop.wait(interval)
