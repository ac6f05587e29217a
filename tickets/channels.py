"""Channel adapters: how an agent's reply leaves KeyBuzz for the buyer.

Tickets know channels by name only. Each channel app registers, at start-up (its
`AppConfig.ready`), a factory that returns the adapter to use right now for its channel
(`channel_register`); `send_replies` asks `channel_adapter(ticket.channel)` once per run. A channel
nobody registered gets `UnconfiguredChannel`: its replies fail at once with a reason agents can
read, instead of waiting in the queue forever.

An adapter implements `send_reply(ticket, message) -> SendResult` and raises one of the named
`ChannelError`s below. Their messages are shown to agents (the ticket view) and written to logs, so
an adapter must never put a secret (token, password, signed URL) in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

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


class UnconfiguredChannel:
    """Refuses every reply with `reason` (the channel has no sender configured)."""

    name = "unconfigured"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send_reply(self, ticket: Ticket, message: TicketMessage) -> SendResult:
        raise ChannelNotConfiguredError(self.reason)


AdapterFactory = Callable[[], ChannelAdapter]
_factories: dict[str, AdapterFactory] = {}


def channel_register(channel: str, factory: AdapterFactory) -> None:
    """Declares where replies of tickets on `channel` go; `factory` is called once per send run and
    may raise ImproperlyConfigured (the command exits with code 2 and that message)."""
    _factories[channel] = factory


def channel_adapter(channel: str) -> ChannelAdapter:
    """The adapter that delivers replies of tickets on `channel`, as configured right now."""
    factory = _factories.get(channel)
    if factory is None:
        return UnconfiguredChannel(f"No sender for channel {channel!r}: the reply was not delivered")
    return factory()
