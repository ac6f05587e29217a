"""Where agents' replies to Amazon buyers go: the adapter `send_replies` uses for Amazon tickets
(registered with tickets' channel registry by `MarketplacesConfig.ready`, with Amazon's content
rules).

A queued Amazon Messaging API action (`channel_action`) goes through SP-API. Otherwise a connection
with SMTP settings (its relay mailbox's) sends by e-mail, from the seller's approved
address to the buyer's relay address: `AmazonReplyChannel`. Other connections' replies go where the
configuration says:

- `AMAZON_USE_MOCK=true` → `MockAmazonChannel`, which accepts every reply, except that a body
  containing one of the `MOCK_*` markers fails deterministically (tests and demos use them);
- `TICKETS_AMAZON_ADAPTER=<dotted path>` → that class;
- neither → every reply fails at once with "No Amazon sender configured", so agents see that the
  buyer did not get it instead of a reply queued forever.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from keybuzz.errors import ApplicationError
from keybuzz.secrets import SecretStoreError
from marketplaces.amazon.reply_mail import ReplyFile, ReplyTarget, compose_reply, reply_message_id
from marketplaces.amazon.spapi import MessageAttachment, SpApiError, SpApiNotSent, SpApiThrottled, SpApiUnavailable
from marketplaces.amazon.tokens import AccessTokenProvider, TokenRefreshFailed
from marketplaces.mailbox.errors import MailboxError
from marketplaces.mailbox.passwords import MailboxPasswordMissing, mailbox_password_read
from marketplaces.mailbox.smtp import SmtpAuthError, SmtpError, SmtpUncertain, smtp_send
from marketplaces.models import ExternalMessage, Mailbox
from marketplaces.orders.sync import spapi_client_for, spapi_usage_add
from marketplaces.services.mailbox import mailbox_smtp_settings
from marketplaces.services.messaging import action_target
from tickets.attachments import StorageUnavailable, StoredFileMissing, attachment_read
from tickets.channels import (
    ChannelAdapter,
    ChannelError,
    PermanentChannelError,
    SendResult,
    TemporaryChannelError,
    UnconfiguredChannel,
)
from tickets.models import Attachment, Direction, Ticket, TicketMessage

# Markers the mock channel reacts to (docs/tickets-api.md, "Sending replies").
MOCK_FAIL_MARKER = "[mock-fail]"  # every attempt fails temporarily → retried, then FAILED
MOCK_FAIL_ONCE_MARKER = "[mock-fail-once]"  # the first attempt fails temporarily, the second succeeds
MOCK_REJECT_MARKER = "[mock-reject]"  # refused permanently → FAILED at once

NO_AMAZON_SENDER = (
    "No Amazon sender configured: the reply was not delivered "
    "(set AMAZON_USE_MOCK=true for the mock channel, or TICKETS_AMAZON_ADAPTER for the real one)"
)


class MockAmazonChannel:
    """Stands in for Amazon when AMAZON_USE_MOCK is true: accepts replies, sends nothing."""

    name = "amazon-mock"

    def send_reply(self, ticket: Ticket, message: TicketMessage) -> SendResult:
        body = message.body
        if MOCK_REJECT_MARKER in body:
            raise PermanentChannelError("Mock Amazon channel rejected the reply (mock-reject marker)")
        if MOCK_FAIL_MARKER in body:
            raise TemporaryChannelError("Mock Amazon channel unavailable (mock-fail marker)")
        if MOCK_FAIL_ONCE_MARKER in body and message.delivery_attempts <= 1:
            raise TemporaryChannelError("Mock Amazon channel unavailable (mock-fail-once marker, first attempt)")
        return SendResult(external_id=f"mock-{message.pk}", sent_at=timezone.now())


def _fallback_adapter() -> ChannelAdapter:
    """What sends the replies of connections without SMTP settings."""
    if settings.AMAZON_USE_MOCK:
        return MockAmazonChannel()
    path = settings.TICKETS_AMAZON_ADAPTER
    if path:
        try:
            adapter_class = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"TICKETS_AMAZON_ADAPTER={path!r} cannot be imported: {exc}") from None
        adapter: ChannelAdapter = adapter_class()
        return adapter
    return UnconfiguredChannel(NO_AMAZON_SENDER)


logger = logging.getLogger("marketplaces.replies")


def reply_target(ticket: Ticket) -> ReplyTarget | None:
    """The buyer's latest message on the ticket that came by e-mail: its relay address, Message-ID
    and subject (None when the ticket holds no such message, e.g. mock messages)."""
    latest = [
        external_id
        for external_id in TicketMessage.objects.filter(
            ticket=ticket, direction=Direction.INBOUND, external_message_id__isnull=False
        )
        .order_by("-sent_at", "-id")
        .values_list("external_message_id", flat=True)[:20]
        if external_id is not None
    ]
    stored = {row["id"]: row for row in ExternalMessage.objects.filter(id__in=latest).values("id", "subject", "raw")}
    for external_id in latest:  # newest first; a mock message has no relay address
        row = stored.get(external_id)
        if row is None or not isinstance(row["raw"], dict) or not row["raw"].get("relay_address"):
            continue
        raw: dict[str, object] = row["raw"]
        return ReplyTarget(
            relay_address=str(raw["relay_address"]),
            message_id=str(raw.get("message_id") or ""),
            subject=str(raw.get("subject") or row["subject"] or ""),
        )
    return None


def _files(message: TicketMessage) -> tuple[ReplyFile, ...]:
    files = []
    for attachment in Attachment.objects.filter(message=message).order_by("id"):
        try:
            data = attachment_read(attachment.storage_name)
        except StoredFileMissing:
            raise PermanentChannelError(
                f"The file {attachment.filename} of this reply is no longer in storage: upload it again"
            ) from None
        except StorageUnavailable as exc:  # nothing was sent yet: retried like any temporary failure
            raise TemporaryChannelError(exc.message) from None
        files.append(ReplyFile(filename=attachment.filename, content_type=attachment.content_type, data=data))
    return tuple(files)


class AmazonReplyChannel:
    """Sends each reply through its connection's SMTP settings when it has them, else through
    `fallback` (the mock, a configured adapter, or "no sender")."""

    name = "amazon"

    def __init__(self, fallback: ChannelAdapter) -> None:
        self.fallback = fallback
        # One secret-store read per mailbox and run (the adapter lives for one send_replies run).
        self._passwords: dict[str, str] = {}
        self._tokens: AccessTokenProvider | None = None  # LWA tokens for the Messaging API, made when needed

    def send_reply(self, ticket: Ticket, message: TicketMessage) -> SendResult:
        if message.channel_action:  # a Messaging API action, whatever the connection's mailbox
            return self._send_action(ticket, message)
        mailbox = Mailbox.objects.filter(connection_id=ticket.connection_id).first() if ticket.connection_id else None
        if mailbox is None or not mailbox.has_smtp:
            return self.fallback.send_reply(ticket, message)
        return self._send_smtp(mailbox, ticket, message)

    def _send_smtp(self, mailbox: Mailbox, ticket: Ticket, message: TicketMessage) -> SendResult:
        target = reply_target(ticket)
        if target is None:
            raise PermanentChannelError(
                "This ticket has no buyer e-mail from Amazon's relay to answer: the reply was not sent"
            )
        try:
            password = self._passwords.get(mailbox.smtp_secret_ref) or mailbox_password_read(mailbox.smtp_secret_ref)
            self._passwords[mailbox.smtp_secret_ref] = password
        except MailboxPasswordMissing:
            self._record_auth_failure(mailbox, "smtp_password_missing", "The SMTP password is missing: enter it again")
            raise PermanentChannelError(
                "The SMTP password of this connection is missing: enter it again in the mailbox settings"
            ) from None
        except SecretStoreError:
            raise TemporaryChannelError("The secret store is unavailable: the reply will be sent later") from None

        sent_at = timezone.now()
        message_id = reply_message_id(
            reply_id=message.pk, from_address=mailbox.smtp_from_address, key=settings.SECRET_KEY
        )
        raw = compose_reply(
            from_address=mailbox.smtp_from_address,
            target=target,
            body=message.body,
            message_id=message_id,
            sent_at=sent_at,
            files=_files(message),
        )
        try:
            accepted = smtp_send(
                mailbox_smtp_settings(mailbox, password),
                mail_from=mailbox.smtp_from_address,
                recipient=target.relay_address,
                message=raw,
            )
        except SmtpAuthError as exc:
            self._record_auth_failure(mailbox, exc.code, str(exc))
            raise PermanentChannelError(str(exc)) from None
        except SmtpUncertain as exc:
            raise PermanentChannelError(
                f"Delivery uncertain: {exc}. Check the conversation in Seller Central, and send it again only if "
                "it is missing"
            ) from None
        except SmtpError as exc:  # the server's 4xx/5xx, unreachable, TLS: it says whether to retry
            raise (TemporaryChannelError if exc.retryable else PermanentChannelError)(str(exc)) from None
        except MailboxError as exc:  # the host is not allowed (a private address): only the operator can help
            raise PermanentChannelError(str(exc)) from None
        if mailbox.smtp_last_error:
            Mailbox.objects.filter(pk=mailbox.pk).update(
                smtp_last_error="", smtp_last_error_code="", smtp_last_error_at=None
            )
        logger.info(
            "Reply %s handed to %s for %s: %s", message.pk, mailbox.smtp_host, target.relay_address, accepted.reply
        )
        return SendResult(external_id=message_id, sent_at=sent_at)

    def _send_action(self, ticket: Ticket, message: TicketMessage) -> SendResult:
        """Sends an Amazon Messaging API action (queued by marketplaces.services.messaging)."""
        try:
            target = action_target(ticket)
        except ApplicationError as exc:
            raise PermanentChannelError(exc.message) from None
        if self._tokens is None:
            self._tokens = AccessTokenProvider()
        client = spapi_client_for(target.connection, self._tokens)
        files = [
            MessageAttachment(filename=f.filename, content_type=f.content_type, data=f.data) for f in _files(message)
        ]
        try:
            client.send_message(
                message.channel_action, target.order_id, target.marketplace_id, message.body, attachments=files
            )
        except SpApiError as exc:
            throttled = isinstance(exc, SpApiThrottled)
            spapi_usage_add(throttled=int(throttled), failures=int(not throttled))
            raise self._action_error(message.channel_action, exc) from None
        except TokenRefreshFailed as exc:  # nothing reached Amazon: later
            raise TemporaryChannelError(f"Amazon messaging: {exc}") from None
        spapi_usage_add()
        return SendResult(external_id=f"amazon-messaging:{message.channel_action}", sent_at=timezone.now())

    @staticmethod
    def _action_error(action: str, exc: SpApiError) -> ChannelError:
        if isinstance(exc, SpApiThrottled | SpApiNotSent):  # nothing reached Amazon: later
            return TemporaryChannelError(f"Amazon messaging: {exc}")
        if isinstance(exc, SpApiUnavailable):
            # A POST that failed on Amazon's side or timed out may have been delivered: never resent blindly.
            return PermanentChannelError(
                f"Delivery uncertain: Amazon did not confirm the {action} message ({exc}). Check the buyer's "
                "conversation in Seller Central, and send it again only if it is missing"
            )
        return PermanentChannelError(f"Amazon refused the {action} message: {exc}")  # no role, unknown order…

    @staticmethod
    def _record_auth_failure(mailbox: Mailbox, code: str, text: str) -> None:
        """Shown on the connection's status until a check or a send succeeds."""
        Mailbox.objects.filter(pk=mailbox.pk).update(
            smtp_last_error=text[:1000], smtp_last_error_code=code, smtp_last_error_at=timezone.now()
        )


def amazon_reply_adapter() -> ChannelAdapter:
    """The Amazon adapter as configured right now (called once per send run)."""
    return AmazonReplyChannel(fallback=_fallback_adapter())
