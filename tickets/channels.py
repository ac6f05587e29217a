"""Channel adapters: how an agent's reply leaves KeyBuzz for the buyer.

One adapter per channel, behind one interface: `send_reply(ticket, message) -> SendResult`, raising
one of the named `ChannelError`s below. Error messages are shown to agents (the ticket view) and
written to logs, so an adapter must never put a secret (token, password, signed URL) in them.

For Amazon:
- `AMAZON_USE_MOCK=true` → `MockAmazonChannel`, which accepts every reply, except that a body
  containing one of the `MOCK_*` markers fails deterministically (tests and demos use them);
- `TICKETS_AMAZON_ADAPTER=<dotted path>` → the real sender (the relay-mailbox work plugs in here);
- neither → `UnconfiguredChannel`: every reply fails at once with "No Amazon sender configured",
  so agents see that the buyer did not get it instead of a reply queued forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from tickets import conf
from tickets.models import Channel

if TYPE_CHECKING:
    from tickets.models import Ticket, TicketMessage


@dataclass(frozen=True)
class SendResult:
    """What a channel answers when it accepts a reply."""

    external_id: str = ""  # the channel's reference for the sent message, if it gives one
    sent_at: datetime | None = None  # when the channel accepted it (default: now)


class ChannelError(Exception):
    """A reply could not be delivered. `str(error)` is safe to show and log."""

    retryable = True


class TemporaryChannelError(ChannelError):
    """Timeout, throttling, 5xx…: the same reply may go through later."""

    retryable = True


class PermanentChannelError(ChannelError):
    """The channel refused this reply (bad recipient, content rejected…): retrying cannot help."""

    retryable = False


class ChannelNotConfiguredError(PermanentChannelError):
    """No sender is configured for the ticket's channel."""


class ChannelAdapter(Protocol):
    name: str

    def send_reply(self, ticket: Ticket, message: TicketMessage) -> SendResult: ...


# Markers the mock channel reacts to (documented in docs/tickets-api.md).
MOCK_FAIL_MARKER = "[mock-fail]"  # every attempt fails temporarily → retried, then FAILED
MOCK_FAIL_ONCE_MARKER = "[mock-fail-once]"  # the first attempt fails temporarily, the second succeeds
MOCK_REJECT_MARKER = "[mock-reject]"  # refused permanently → FAILED at once


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


class UnconfiguredChannel:
    name = "unconfigured"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send_reply(self, ticket: Ticket, message: TicketMessage) -> SendResult:
        raise ChannelNotConfiguredError(self.reason)


NO_AMAZON_SENDER = (
    "No Amazon sender configured: the reply was not delivered "
    "(set AMAZON_USE_MOCK=true for the mock channel, or TICKETS_AMAZON_ADAPTER for the real one)"
)


def channel_adapter(channel: str) -> ChannelAdapter:
    """The adapter that delivers replies of tickets on `channel`, as configured right now."""
    if channel == Channel.AMAZON:
        if conf.amazon_use_mock():
            return MockAmazonChannel()
        path = conf.amazon_adapter_path()
        if path:
            try:
                adapter_class = import_string(path)
            except ImportError as exc:
                raise ImproperlyConfigured(f"TICKETS_AMAZON_ADAPTER={path!r} cannot be imported: {exc}") from None
            return adapter_class()
        return UnconfiguredChannel(NO_AMAZON_SENDER)
    return UnconfiguredChannel(f"No sender for channel {channel!r}: the reply was not delivered")
