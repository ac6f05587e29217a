"""Where agents' replies to Amazon buyers go: the adapter `send_replies` uses for Amazon tickets
(registered with tickets' channel registry by `MarketplacesConfig.ready`).

- `AMAZON_USE_MOCK=true` → `MockAmazonChannel`, which accepts every reply, except that a body
  containing one of the `MOCK_*` markers fails deterministically (tests and demos use them);
- `TICKETS_AMAZON_ADAPTER=<dotted path>` → that class;
- neither → every reply fails at once with "No Amazon sender configured", so agents see that the
  buyer did not get it instead of a reply queued forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from tickets.channels import (
    ChannelAdapter,
    PermanentChannelError,
    SendResult,
    TemporaryChannelError,
    UnconfiguredChannel,
)

if TYPE_CHECKING:
    from tickets.models import Ticket, TicketMessage

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


def amazon_reply_adapter() -> ChannelAdapter:
    """The Amazon adapter as configured right now."""
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
