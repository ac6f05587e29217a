"""Marketplace connections, OAuth states and the raw messages fetched from marketplaces."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from keybuzz.models import Tenant
from tickets.models import Ticket, TicketMessage


class MarketplaceType(models.TextChoices):
    AMAZON = "AMAZON", "Amazon"


class ConnectionStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    CONNECTED = "CONNECTED", "Connected"
    ERROR = "ERROR", "Error"
    NEEDS_REAUTH = "NEEDS_REAUTH", "Needs re-authorization"
    DISCONNECTED = "DISCONNECTED", "Disconnected"


class AmazonRegion(models.TextChoices):
    NA = "NA", "North America"
    EU = "EU", "Europe"
    FE = "FE", "Far East"


class MarketplaceConnection(models.Model):
    """A tenant's account on a marketplace. The refresh token lives in the secret store at
    `secret_ref`; it is never stored in this table."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="connections")
    type = models.CharField(max_length=16, choices=MarketplaceType.choices, default=MarketplaceType.AMAZON)
    status = models.CharField(max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.PENDING)
    selling_partner_id = models.CharField(max_length=64)
    region = models.CharField(max_length=2, choices=AmazonRegion.choices, blank=True)
    marketplace_ids = models.JSONField(default=list, blank=True)
    app_source = models.CharField(max_length=32, blank=True)
    secret_ref = models.CharField(max_length=255, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)

    # Polling state: the cursor is opaque to everything but the message source that wrote it.
    poll_cursor = models.CharField(max_length=512, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # What the poller filed through this connection, counted by the filing transaction itself: the
    # status shows them without counting every message of the connection on each request.
    message_count = models.PositiveBigIntegerField(default=0)
    ticket_count = models.PositiveBigIntegerField(default=0)
    # SP-API refused this seller a role KeyBuzz needs (403): recorded once, and sync_orders makes no
    # further call for the connection until the seller reconnects (the OAuth flow clears it).
    spapi_forbidden_at = models.DateTimeField(null=True, blank=True)
    spapi_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "type", "selling_partner_id"], name="connection_unique_tenant_type_seller"
            ),
        ]
        indexes = [
            # The poller's claim: due connections of one status, oldest first.
            models.Index(fields=["status", "next_poll_at"], name="connection_due"),
            models.Index(fields=["tenant", "type", "status"], name="connection_tenant_type_status"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.selling_partner_id} ({self.tenant_id})"


class MailboxSecurity(models.TextChoices):
    TLS = "tls", "TLS (implicit, e.g. port 993)"
    STARTTLS = "starttls", "STARTTLS"
    NONE = "none", "None (loopback hosts only)"


class Mailbox(models.Model):
    """The seller's relay mailbox for one Amazon connection: where KeyBuzz reads the buyers'
    messages over IMAP. The password is in the secret store at `imap_secret_ref`, never here."""

    connection = models.OneToOneField(
        MarketplaceConnection, on_delete=models.CASCADE, primary_key=True, related_name="mailbox"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="mailboxes")
    imap_host = models.CharField(max_length=255)
    imap_port = models.PositiveIntegerField()
    imap_security = models.CharField(max_length=16, choices=MailboxSecurity.choices)
    imap_username = models.CharField(max_length=255)
    imap_folder = models.CharField(max_length=255, default="INBOX")
    imap_secret_ref = models.CharField(max_length=255)
    # The last failure reading the mailbox (login refused, host down, TLS, folder missing): shown in
    # the status; cleared by the next successful poll and by new settings.
    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)  # marketplaces.mailbox.errors
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Where replies leave from (optional): the seller's submission server and the address Amazon
    # approved as sender (Seller Central → Messaging Permissions). Empty smtp_host: no SMTP.
    smtp_host = models.CharField(max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(null=True, blank=True)
    smtp_security = models.CharField(max_length=16, choices=MailboxSecurity.choices, blank=True)
    smtp_username = models.CharField(max_length=255, blank=True)
    smtp_from_address = models.CharField(max_length=255, blank=True)
    smtp_secret_ref = models.CharField(max_length=255, blank=True)
    # The last SMTP login failure (the settings check, or a send refused at AUTH); cleared by a
    # successful check or send.
    smtp_last_error = models.TextField(blank=True)
    smtp_last_error_code = models.CharField(max_length=64, blank=True)
    smtp_last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.imap_username}@{self.imap_host}/{self.imap_folder}"

    @property
    def has_smtp(self) -> bool:
        return bool(self.smtp_host)


class MailboxActivityKind(models.TextChoices):
    SELLER_CENTRAL_COPY = "seller_central_copy", "Copy of a reply written in Seller Central"
    DELIVERY_FAILURE = "delivery_failure", "Delivery failure of a reply"
    NOTIFICATION = "notification", "Amazon notification"
    IGNORED = "ignored", "Ignored (not from Amazon)"


class MailboxActivity(models.Model):
    """A mail of the relay mailbox that is not a buyer's message: Amazon's notifications (returns,
    refunds, A-to-z), delivery failures, copies of replies written in Seller Central, and mail
    ignored with a reason (newsletters, spam). Kept so that nothing read is dropped silently;
    (connection, external_id) is unique, so a mailbox read twice records each mail once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="mailbox_activity", db_index=False)
    connection = models.ForeignKey(
        MarketplaceConnection, on_delete=models.CASCADE, related_name="mailbox_activity", db_index=False
    )
    external_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=MailboxActivityKind.choices)
    notification_type = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    sender = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    order_id = models.CharField(max_length=64, blank=True)
    relay_address = models.CharField(max_length=255, blank=True)
    refers_to_message_id = models.CharField(max_length=255, blank=True)
    text = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    # The ticket message a delivery failure or a Seller Central copy was matched to (a tickets id,
    # opaque here); null: not matched, so an operator or the seller can look at it.
    matched_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "mailbox activity"
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="mailboxactivity_unique_ext_id"),
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="mailboxactivity_tenant")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject[:60]}"


class OAuthState(models.Model):
    """One OAuth authorization attempt. Only SHA-256 hashes are stored: of the state value, and of
    the browser key (the cookie set by start), so only the browser that started can finish."""

    state_hash = models.CharField(max_length=64, unique=True)
    browser_hash = models.CharField(max_length=64, blank=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oauth_states")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=16, choices=MarketplaceType.choices, default=MarketplaceType.AMAZON)
    region = models.CharField(max_length=2, choices=AmazonRegion.choices, blank=True)
    marketplace_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth state"
        indexes = [models.Index(fields=["expires_at"], name="oauthstate_expires")]

    def __str__(self) -> str:
        return f"OAuth state for {self.tenant_id} (expires {self.expires_at:%Y-%m-%d %H:%M})"


class ExternalMessage(models.Model):
    """A message exactly as fetched from a marketplace. (connection, external_id) is unique:
    that constraint, not a lookup, is what makes every poll idempotent."""

    # No index of their own: (tenant, created_at) and the (connection, external_id) constraint lead with them.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="external_messages", db_index=False)
    connection = models.ForeignKey(
        MarketplaceConnection, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    type = models.CharField(max_length=16, choices=MarketplaceType.choices, default=MarketplaceType.AMAZON)
    external_id = models.CharField(max_length=255)
    thread_key = models.CharField(max_length=255)
    order_id = models.CharField(max_length=64, blank=True)
    sender = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    sent_at = models.DateTimeField()
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="extmsg_unique_connection_external_id"),
        ]
        indexes = [
            models.Index(fields=["type", "created_at"], name="extmsg_type_created"),
            models.Index(fields=["tenant", "created_at"], name="extmsg_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} message {self.external_id}"

    @property
    def ticket(self) -> Ticket | None:
        """The ticket the message was filed in. The link is stored once, on the ticket side
        (`TicketMessage.external_message_id`, unique): a second copy here would cost the poller an
        UPDATE of every message it inserts."""
        filed = TicketMessage.objects.select_related("ticket").filter(external_message_id=self.pk).first()
        return filed.ticket if filed else None


class QuarantinedMessage(models.Model):
    """A fetched message that could not be read, kept aside with the reason so it never blocks
    the connection's other messages and an operator can look at it in the admin."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="quarantined_messages")
    connection = models.ForeignKey(MarketplaceConnection, on_delete=models.CASCADE, related_name="quarantined")
    # NULL when the message had no id: such messages never conflict with one another.
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    reason = models.TextField()
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="quarantine_unique_connection_external_id"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="quarantine_created")]

    def __str__(self) -> str:
        return f"Quarantined {self.external_id or 'message'}: {self.reason[:60]}"


class PollRun(models.Model):
    """One run of the poller (`poll_amazon --once` from cron, or one turn of its loop), written at
    the end of the run. The poller is a separate process from the web server, so what it measured
    has to go through the database to reach `GET /metrics` and the dashboard; the age of the newest
    row also shows a cron that stopped running. Rows older than the retention are pruned."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    worker = models.CharField(max_length=128)
    connections = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    new_messages = models.PositiveIntegerField(default=0)
    new_tickets = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    recorded = models.PositiveIntegerField(default=0)  # relay mails recorded as Amazon notices
    ignored = models.PositiveIntegerField(default=0)  # relay mails not from Amazon
    skipped_old = models.PositiveIntegerField(default=0)  # older than a new mailbox's backfill window
    failures = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)

    class Meta:
        indexes = [models.Index(fields=["-finished_at"], name="pollrun_finished")]

    def __str__(self) -> str:
        return f"Poll run {self.finished_at:%Y-%m-%d %H:%M:%S} ({self.connections} connections)"


class PollCounter(models.Model):
    """Cumulative poller counters (runs, failures, the duration histogram's buckets, …), one row
    per name, incremented in the database by every run. Unlike PollRun rows they are never pruned,
    so they only grow: what Prometheus counters and histograms require, shared by every poller
    process on every host and kept across restarts."""

    name = models.CharField(max_length=64, unique=True)
    value = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.name} = {self.value:g}"


class AmazonOrder(models.Model):
    """An order an open ticket talks about, as SP-API's getOrder last described it (`sync_orders`).
    One row per connection and order, whatever the number of tickets about it; `data` is what the
    tickets show (copied to them through `tickets.ingest`). While a worker fetches it, the row is
    leased to `fetch_worker` until `next_fetch_at`, which is otherwise when it is due again."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="amazon_orders", db_index=False)
    connection = models.ForeignKey(
        MarketplaceConnection, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    order_id = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(null=True, blank=True)
    fetch_worker = models.CharField(max_length=128, blank=True)
    failures = models.PositiveIntegerField(default=0)  # consecutive: the backoff's exponent
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "order_id"], name="amazonorder_unique_connection_order"),
        ]
        indexes = [models.Index(fields=["next_fetch_at"], name="amazonorder_due")]

    def __str__(self) -> str:
        return self.order_id


class SpApiDailyUsage(models.Model):
    """SP-API calls per day, for the operators' dashboard: calls made, answers 429 (after the
    client's own retries) and other failures. Incremented by every sync run in the database."""

    day = models.DateField(unique=True)
    calls = models.PositiveIntegerField(default=0)
    throttled = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "SP-API daily usage"

    def __str__(self) -> str:
        return f"{self.day}: {self.calls} calls"
