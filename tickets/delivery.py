"""Delivering the agents' queued replies through their ticket's channel: `send_replies`' work.

A run claims due QUEUED replies with a lease (`keybuzz.workers.leases`: several workers on several
hosts share the queue and never send one reply at once), then sends each one through its
channel's adapter with no database transaction open, and records the outcome where it still holds
the lease:

- accepted → SENT, with the channel's reference;
- a temporary failure → stays QUEUED with the reason, retried after an exponential backoff;
  after `TICKETS_SEND_MAX_ATTEMPTS` attempts → FAILED;
- refused (or no sender configured) → FAILED at once; the ticket is unanswered again.

No reply is sent twice. Just before a reply is handed to its channel, `send_started_at` is set and
committed; it is cleared when the channel's answer is recorded. A worker that dies mid-run keeps its
replies until the lease (`TICKETS_SEND_LEASE_SECONDS`) runs out; the next run then sends those it
had not started, and turns the one it was sending (`send_started_at` still set: the mail server may
have accepted it before the crash) FAILED with `DELIVERY_UNCERTAIN`, for an agent to check and send
again by hand. A send that outlasted its lease while its worker lived is found the same way; if
that worker then learns the channel accepted it, the reply becomes SENT after all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from keybuzz.logging import log_context
from keybuzz.workers import worker_name
from keybuzz.workers.leases import Lease
from keybuzz.workers.runner import StopCheck
from tickets import conf
from tickets.channels import ChannelAdapter, ChannelError, channel_adapter
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus
from tickets.uploads import uploads_purge_unused

logger = logging.getLogger("tickets.delivery")

LOG = "[Reply Sender]"
# A claimed reply is held until next_attempt_at: the lease's end is also when it is due again.
REPLY_LEASE = Lease(owner_field="delivery_worker", expires_field="next_attempt_at")
DELIVERY_UNCERTAIN = (
    "Delivery uncertain: sending was interrupted after the reply was handed to the channel, so it may have reached "
    "the buyer. Check the conversation on the marketplace, and send it again only if it is missing."
)


@dataclass
class SendSummary:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0  # failed this time, another attempt is scheduled
    failed: int = 0  # failed for good (FAILED)
    lost: int = 0  # another worker took the reply over (lease expired) before this one finished
    uploads_deleted: int = 0  # agents' uploads no reply took within a day
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.retrying == 0 and self.failed == 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"send_replies: claimed={self.claimed} sent={self.sent} retrying={self.retrying} "
            f"failed={self.failed} lost={self.lost} uploads_deleted={self.uploads_deleted} seconds={self.seconds:.3f}"
        )


def _due(now: datetime) -> QuerySet[TicketMessage]:
    return TicketMessage.objects.filter(direction=Direction.OUTBOUND, delivery_status=DeliveryStatus.QUEUED).filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True)
    )


def replies_claim(*, worker: str, now: datetime, limit: int, exclude: Collection[int] = ()) -> list[TicketMessage]:
    """Leases up to `limit` due QUEUED replies to `worker` (oldest due first), counting the attempt."""
    due = _due(now).exclude(pk__in=list(exclude)) if exclude else _due(now)
    return REPLY_LEASE.claim(
        due,
        worker=worker,
        until=now + conf.send_lease(),
        limit=limit,
        order_by=[F("next_attempt_at").asc(nulls_first=True), "id"],
        also={"delivery_attempts": F("delivery_attempts") + 1},
    )


def _still_ours(message: TicketMessage, worker: str) -> QuerySet[TicketMessage]:
    # The lease check: a worker that took the reply over after our lease expired is its holder
    # now, so our late result no longer matches and is dropped.
    return TicketMessage.objects.filter(
        REPLY_LEASE.held_by(worker), pk=message.pk, delivery_status=DeliveryStatus.QUEUED
    )


def ticket_reopen_after_failed_reply(*, message: TicketMessage) -> None:
    """A reply will never reach the buyer: unless another reply answered them, the ticket is
    unanswered again — its response clock resumes and it goes back to OPEN so agents see it."""
    ticket = Ticket.objects.select_for_update().get(pk=message.ticket_id)
    last_inbound = ticket.last_inbound_at
    live_replies = ticket.messages.filter(direction=Direction.OUTBOUND).exclude(delivery_status=DeliveryStatus.FAILED)
    # The last live reply is another one now (or none): what the list and the stats read.
    last_reply = live_replies.aggregate(at=Max("sent_at"))["at"]
    if last_reply != ticket.last_reply_at:
        ticket.last_reply_at = last_reply
        ticket.save(update_fields=["last_reply_at"])
    if last_reply is not None and (last_inbound is None or last_reply >= last_inbound):
        return
    fields = []
    due_times = [due for due in (ticket.response_due_at, message.stopped_response_due_at) if due is not None]
    if last_inbound is not None and due_times and min(due_times) != ticket.response_due_at:
        ticket.response_due_at = min(due_times)
        fields.append("response_due_at")
    if ticket.status != TicketStatus.OPEN:
        ticket.status = TicketStatus.OPEN
        fields.append("status")
    if fields:
        ticket.save(update_fields=[*fields, "updated_at"])


class _Run:
    """One run's adapters (built once per channel) and summary."""

    def __init__(self, *, worker: str, now: datetime) -> None:
        self.worker = worker
        self.now = now
        self.summary = SendSummary()
        self.adapters: dict[str, ChannelAdapter] = {}

    def adapter(self, channel: str) -> ChannelAdapter:
        if channel not in self.adapters:
            self.adapters[channel] = channel_adapter(channel)
        return self.adapters[channel]

    def deliver(self, claimed: TicketMessage) -> None:
        message = TicketMessage.objects.select_related("ticket").filter(pk=claimed.pk).first()
        if message is None:  # the ticket was deleted meanwhile
            self.summary.lost += 1
            return
        # Every line logged while sending this reply carries its tenant and channel connection ids.
        with log_context(tenant_id=message.ticket.tenant_id, connection_id=message.ticket.connection_id):
            self._send(message, attempt=claimed.delivery_attempts)

    def _send(self, message: TicketMessage, *, attempt: int) -> None:
        ticket = message.ticket
        summary = self.summary
        max_attempts = conf.send_max_attempts()
        where = f"reply {message.pk} on ticket {ticket.pk} for tenant {ticket.tenant_id}"
        ours = _still_ours(message, self.worker)
        if message.send_started_at is not None:  # its last send never finished: it may have gone out
            logger.error("%s %s: %s", LOG, where, DELIVERY_UNCERTAIN)
            self._failed_for_good(message, ours, reason=DELIVERY_UNCERTAIN, attempt=attempt, where=where)
            return
        adapter = self.adapter(ticket.channel)
        started = timezone.now()
        # Committed before the channel is called (no transaction is open here): the mark that
        # tells a later run this reply may already be out.
        if not ours.update(send_started_at=started):
            summary.lost += 1
            return

        # No transaction is open here: the channel may take seconds to answer.
        try:
            result = adapter.send_reply(ticket, message)
        except ChannelError as exc:
            reason, retry = str(exc) or type(exc).__name__, exc.retryable
        except Exception as exc:  # a bug or an unwrapped library error: retried, never fatal to the run
            reason, retry = f"Unexpected {type(exc).__name__} in the {adapter.name} channel", True
        else:
            sent = {
                "delivery_status": DeliveryStatus.SENT,
                "delivered_at": result.sent_at or timezone.now(),
                "delivery_ref": result.external_id[:255],
                "delivery_error": "",
                "next_attempt_at": None,
                "delivery_worker": "",
                "send_started_at": None,
            }
            # Our lease, or else a later run found our send unfinished and made it FAILED as
            # uncertain (keeping our mark): the channel did accept it, so it is SENT after all.
            uncertain_because_of_us = TicketMessage.objects.filter(
                pk=message.pk, delivery_status=DeliveryStatus.FAILED, send_started_at=started
            )
            if ours.update(**sent) or uncertain_because_of_us.update(**sent):
                summary.sent += 1
                logger.info("%s Sent %s via %s (attempt %d)", LOG, where, adapter.name, attempt)
            else:
                summary.lost += 1
                logger.warning("%s Sent %s but its lease had expired", LOG, where)
            return

        if retry and attempt < max_attempts:
            next_at = self.now + conf.send_backoff(attempt)
            if ours.update(delivery_error=reason, next_attempt_at=next_at, delivery_worker="", send_started_at=None):
                summary.retrying += 1
                logger.warning(
                    "%s Send error for %s (attempt %d/%d), retry at %s: %s",
                    LOG,
                    where,
                    attempt,
                    max_attempts,
                    next_at.isoformat(timespec="seconds"),
                    reason,
                )
            else:
                summary.lost += 1
            return

        # The channel answered: nothing is in flight any more.
        self._failed_for_good(message, ours, reason=reason, attempt=attempt, where=where, send_started_at=None)

    def _failed_for_good(
        self,
        message: TicketMessage,
        ours: QuerySet[TicketMessage],
        *,
        reason: str,
        attempt: int,
        where: str,
        **also: object,
    ) -> None:
        with transaction.atomic():
            if not ours.update(
                delivery_status=DeliveryStatus.FAILED,
                delivery_error=reason,
                next_attempt_at=None,
                delivery_worker="",
                **also,
            ):
                self.summary.lost += 1
                return
            ticket_reopen_after_failed_reply(message=message)
        self.summary.failed += 1
        logger.error("%s Send error for %s: FAILED after %d attempt(s): %s", LOG, where, attempt, reason)


def replies_send_due(
    *,
    worker: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    should_stop: StopCheck = lambda: False,
) -> SendSummary:
    """Send the due QUEUED replies once: claim, deliver each, record SENT / retry / FAILED.

    Replies are leased `TICKETS_SEND_CLAIM_BATCH` at a time, claiming again as each batch is done,
    up to `limit` (TICKETS_SEND_BATCH_SIZE) in the run: several senders started together each take
    a small share and come back for more, so none idles while another holds a long queue, and a
    reply's lease starts shortly before it is sent rather than when the run started."""
    started = time.monotonic()
    worker = worker or worker_name()
    run = _Run(worker=worker, now=now or timezone.now())
    remaining = limit or conf.send_batch_size()
    handled: list[int] = []  # a reply retried in this run (no backoff) waits for the next run
    stopped = False
    while remaining > 0 and not stopped:
        if handled and should_stop():  # between two claims (before the first, the loop below asks)
            break
        # The run's clock moves on from `now` (a caller may pass another time than the real one).
        claim_now = run.now + timedelta(seconds=time.monotonic() - started)
        claimed = replies_claim(
            worker=worker, now=claim_now, limit=min(conf.send_claim_batch(), remaining), exclude=handled
        )
        if not claimed:
            break
        remaining -= len(claimed)
        run.summary.claimed += len(claimed)
        handled += [message.pk for message in claimed]
        for index, message in enumerate(claimed):
            if should_stop():
                # Give the rest back at once instead of letting their lease run out.
                REPLY_LEASE.release(
                    TicketMessage.objects.filter(
                        pk__in=[m.pk for m in claimed[index:]], delivery_status=DeliveryStatus.QUEUED
                    ),
                    worker=worker,
                    delivery_attempts=F("delivery_attempts") - 1,
                    next_attempt_at=run.now,
                    delivery_worker="",
                )
                run.summary.claimed -= len(claimed) - index
                stopped = True
                break
            run.deliver(message)
    summary = run.summary
    summary.uploads_deleted = uploads_purge_unused(now=run.now)
    summary.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "%s Run completed: claimed=%d sent=%d retrying=%d failed=%d lost=%d uploads_deleted=%d seconds=%.3f",
        LOG,
        summary.claimed,
        summary.sent,
        summary.retrying,
        summary.failed,
        summary.lost,
        summary.uploads_deleted,
        summary.seconds,
    )
    return summary
