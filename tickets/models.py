"""Tickets and their messages: what a tenant's agents read and answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from keybuzz.models import Tenant


class Channel(models.TextChoices):
    AMAZON = "AMAZON", "Amazon"


class TicketStatus(models.TextChoices):
    OPEN = "OPEN", "Open"
    PENDING = "PENDING", "Pending"
    RESOLVED = "RESOLVED", "Resolved"
    CLOSED = "CLOSED", "Closed"


# Every column the list's filters read (tickets.rows.where_filters, the overdue test included).
LIST_FILTER_COLUMNS = [
    "status",
    "channel",
    "assignee",
    "connection_id",
    "last_inbound_at",
    "last_reply_at",
    "response_due_at",
]


class Ticket(models.Model):
    # Foreign keys without an index of their own where a composite index or constraint leads with
    # them, or with a partial one where most rows are NULL: every index costs each poll a write.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="tickets", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.AMAZON)
    # The channel's account the ticket came through (for Amazon, a marketplace connection), by id
    # only: tickets know channels by name and connections as opaque ids, never their models.
    connection_id = models.UUIDField(null=True, blank=True)
    thread_key = models.CharField(max_length=255)
    subject = models.CharField(max_length=500, blank=True)
    customer_name = models.CharField(max_length=255, blank=True)
    customer_ref = models.CharField(max_length=255, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=TicketStatus.choices, default=TicketStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tickets",
        db_index=False,
    )
    last_message_at = models.DateTimeField(null=True, blank=True)
    response_due_at = models.DateTimeField(null=True, blank=True)
    # What "unanswered" is made of, kept by every write that changes them (filing, replies, failed
    # replies, retries, copies): the last buyer message's time and the last live (not FAILED) reply's.
    # Computing them from the messages on each list and stats request cost O(tickets) subqueries.
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_reply_at = models.DateTimeField(null=True, blank=True)
    # The order as the channel last described it (status, items, packages…), plain JSON written by the
    # channel through `tickets.ingest.ticket_order_context_set`; null until it was fetched once.
    order_context = models.JSONField(null=True, blank=True)
    order_context_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What the list shows of the ticket's messages: the last buyer message or reply (its start) and
    # the counts. Kept by the database (triggers of migration tickets 0015) on every insert, change
    # and delete of a message, whoever writes it; never written by KeyBuzz's code (save() leaves them
    # out). Reading them from the messages for each row of each page was half of PostgreSQL's work
    # for a list request (0.15 of 0.24 ms at 1M tickets). NULL previews: no buyer message nor reply.
    preview_direction = models.CharField(max_length=16, null=True, editable=False)  # noqa: DJ001  (NULL: no message)
    preview_author_name = models.CharField(max_length=255, null=True, editable=False)  # noqa: DJ001
    preview_body = models.TextField(null=True, editable=False)  # noqa: DJ001  (its first 160 characters)
    preview_sent_at = models.DateTimeField(null=True, editable=False)
    message_count = models.IntegerField(default=0, editable=False)  # buyer messages and replies
    note_count = models.IntegerField(default=0, editable=False)
    failed_count = models.IntegerField(default=0, editable=False)  # replies whose delivery FAILED

    class Meta:
        constraints = [
            # A buyer's follow-up in the same thread lands on the same ticket.
            models.UniqueConstraint(fields=["connection_id", "thread_key"], name="ticket_unique_connection_thread"),
        ]
        indexes = [
            # On PostgreSQL these two are built DESC NULLS LAST, the inbox's exact order (migration tickets
            # 0007; SQLite cannot say NULLS LAST in an index): in another NULLS order PostgreSQL would read
            # and sort every ticket of the tenant for each page. The first one also holds every column
            # the list's filters read (INCLUDE, PostgreSQL only; migration 0013), so a page's ids come
            # from the index alone whatever plan PostgreSQL settles on (tickets.rows.rows_fetch).
            models.Index(
                fields=["tenant", "-last_message_at", "-id"], include=LIST_FILTER_COLUMNS, name="ticket_tenant_last_msg"
            ),
            models.Index(fields=["tenant", "status", "-last_message_at", "-id"], name="ticket_tenant_status_last"),
            # Most urgent first (ASC NULLS LAST on both databases), with the same columns (0013).
            models.Index(
                fields=["tenant", "response_due_at", "id"],
                include=[name for name in LIST_FILTER_COLUMNS if name != "response_due_at"],
                name="ticket_tenant_due",
            ),
            # The unanswered tickets (tickets.selectors: active, a buyer message after the last live
            # reply), by due time: what the inbox figures count and the overdue list reads. Partial:
            # it holds the backlog, not the history.
            models.Index(
                fields=["tenant", "response_due_at"],
                condition=Q(status__in=["OPEN", "PENDING"], last_inbound_at__isnull=False)
                & (Q(last_reply_at__isnull=True) | Q(last_reply_at__lt=F("last_inbound_at"))),
                name="ticket_unanswered_due",
            ),
            # The same tickets in the inbox's order (DESC NULLS LAST on PostgreSQL, migration tickets
            # 0012), with the filters' columns (0013): the overdue list reads them, not the tenant's
            # whole history, and not the table.
            models.Index(
                fields=["tenant", "-last_message_at", "-id"],
                condition=Q(status__in=["OPEN", "PENDING"], last_inbound_at__isnull=False)
                & (Q(last_reply_at__isnull=True) | Q(last_reply_at__lt=F("last_inbound_at"))),
                include=LIST_FILTER_COLUMNS,
                name="ticket_unanswered_last_msg",
            ),
            models.Index(fields=["tenant", "assignee", "status"], name="ticket_tenant_assignee"),
            # The backlog by assignee (the inbox figures "unassigned" and "assigned to me"): OPEN and
            # PENDING tickets only, so counting them reads the backlog, not the tenant's history.
            models.Index(
                fields=["tenant", "assignee"],
                condition=Q(status__in=["OPEN", "PENDING"]),
                name="ticket_active_assignee",
            ),
            models.Index(fields=["channel", "created_at"], name="ticket_channel_created"),
            models.Index(fields=["assignee"], condition=Q(assignee__isnull=False), name="ticket_assignee"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A full save of a ticket read a moment ago (the admin's, a service's) would write back the
        # message figures as they were then, over what a message filed meanwhile made them.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = SAVED_FIELDS
        super().save(*args, **kwargs)


# The message figures above, which only the database's triggers write.
MESSAGE_FIGURES = (
    "preview_direction",
    "preview_author_name",
    "preview_body",
    "preview_sent_at",
    "message_count",
    "note_count",
    "failed_count",
)
SAVED_FIELDS = [f.name for f in Ticket._meta.concrete_fields if not f.primary_key and f.name not in MESSAGE_FIGURES]


class TicketStatusCount(models.Model):
    """How many of a tenant's tickets have each status: the inbox figures' `by_status` and `total`
    without counting the tenant's history on every request (474 ms for a 200,000-ticket tenant).

    Kept by the database itself (triggers of migration tickets 0009) on every insert, status change
    and delete of a ticket, whatever writes it: the poller's INSERT … ON CONFLICT reopening, an
    agent's change, a failed reply's reopening, the admin, a tenant's deletion. On PostgreSQL one
    statement-level trigger a statement adds the statement's net change per (tenant, status) with
    INSERT … ON CONFLICT DO UPDATE SET count = count + n: atomic under concurrent writers (the row
    lock orders them) and in the writer's transaction, so a rollback takes it back too."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    status = models.CharField(max_length=16, choices=TicketStatus.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "status"], name="ticketstatuscount_unique_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.status}: {self.count}"


class Direction(models.TextChoices):
    INBOUND = "INBOUND", "Inbound"
    OUTBOUND = "OUTBOUND", "Outbound"
    NOTE = "NOTE", "Internal note"


class DeliveryStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    SENT = "SENT", "Sent"
    FAILED = "FAILED", "Failed"


class TicketMessage(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="ticket_messages")
    # Indexed by ticketmsg_ticket_sent, which leads with it.
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(max_length=16, choices=Direction.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    author_name = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    # The channel's stored copy of an inbound message (for Amazon, an ExternalMessage id), opaque to
    # tickets. Unique: the poller files a message once, whatever the number of runs that fetch it.
    external_message_id = models.BigIntegerField(null=True, blank=True, unique=True)
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, blank=True)
    # The last delivery failure's reason (kept while a retry is pending, final once FAILED). Safe to
    # show to agents: channel adapters never put a secret in it.
    delivery_error = models.TextField(blank=True)
    # Outbound delivery bookkeeping (send_replies): attempts made so far, when the next one is due
    # (also the claim lease while a worker holds the message), when the channel accepted it and the
    # channel's own reference for it.
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_ref = models.CharField(max_length=255, blank=True)
    # The send_replies worker holding the reply's claim (its lease runs until next_attempt_at).
    delivery_worker = models.CharField(max_length=128, blank=True)
    # The ticket's response due time that this reply stopped; put back if the reply finally fails,
    # because then the buyer is still waiting for an answer.
    stopped_response_due_at = models.DateTimeField(null=True, blank=True)
    # Set (committed) just before the channel is asked to send, cleared once its answer is recorded:
    # a reply claimed again with it still set was being sent when its worker died, and may have
    # reached the buyer, so it is not sent again blindly (tickets.delivery).
    send_started_at = models.DateTimeField(null=True, blank=True)
    # Where an OUTBOUND message was written, when not in KeyBuzz: a channel's own tool (for Amazon,
    # "seller_central"). Empty for agents' replies and notes, and for inbound messages.
    origin = models.CharField(max_length=32, blank=True)
    # The channel's content rules the agent chose to send anyway ([{rule, text, start, end}]).
    acknowledged_violations = models.JSONField(default=list, blank=True)
    # A structured message the channel sends instead of free text (for Amazon, a Messaging API
    # action such as "confirmDeliveryDetails"); empty for an ordinary reply.
    channel_action = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["ticket", "sent_at", "id"], name="ticketmsg_ticket_sent"),
            # Delivery indexes hold replies only: inbound messages, most of the table, have no status.
            models.Index(
                fields=["delivery_status", "created_at"], condition=~Q(delivery_status=""), name="ticketmsg_delivery"
            ),
            # The list's per-ticket subqueries (last inbound, last reply, counts by direction).
            models.Index(fields=["ticket", "direction", "sent_at"], name="ticketmsg_ticket_dir_sent"),
            # The sender's claim: due QUEUED replies, oldest first.
            models.Index(
                fields=["delivery_status", "next_attempt_at"],
                condition=~Q(delivery_status=""),
                name="ticketmsg_delivery_due",
            ),
            models.Index(fields=["author"], condition=Q(author__isnull=False), name="ticketmsg_author"),
            # A delivery failure names the reply by the Message-ID it was sent with.
            models.Index(fields=["delivery_ref"], condition=~Q(delivery_ref=""), name="ticketmsg_delivery_ref"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} on ticket {self.ticket_id}"


class Attachment(models.Model):
    """A file of a ticket: a buyer's photo brought by the channel, or an agent's upload. The bytes
    are in Django's storage (`default_storage`: a local folder, or S3-compatible storage), under a
    name derived from the tenant and the content's SHA-256; this row says whose it is and what it
    is called. `message` is empty while an agent's upload waits to be sent with a reply."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="attachments", db_index=False)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="attachments", db_index=False)
    message = models.ForeignKey(
        TicketMessage, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments", db_index=False
    )
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["ticket", "id"], name="attachment_ticket"),
            models.Index(fields=["message"], condition=Q(message__isnull=False), name="attachment_message"),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.size} bytes)"


class MessageTranslation(models.Model):
    """A message's text in another language, as the AI gateway translated it once: asked again, the
    agent gets this copy (no second call, no second count against the tenant's daily AI limit).
    Messages are never edited, so a translation never goes stale."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    message = models.ForeignKey(TicketMessage, on_delete=models.CASCADE, related_name="translations", db_index=False)
    language = models.CharField(max_length=8)  # ISO 639-1, lower case (tickets.assist.LANGUAGES)
    text = models.TextField()
    model = models.CharField(max_length=128, blank=True)  # the gateway's model that translated it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Leads with message: also the index that finds a message's translations (and deletes them).
            models.UniqueConstraint(fields=["message", "language"], name="translation_unique_message_language"),
        ]
        indexes = [models.Index(fields=["tenant"], name="translation_tenant")]

    def __str__(self) -> str:
        return f"message {self.message_id} in {self.language}"
