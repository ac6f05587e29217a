"""Channel adapters: how an agent's reply leaves KeyBuzz for the buyer.

Tickets know channels by name only. Each channel app registers, at start-up (its
`AppConfig.ready`), a factory that returns the adapter to use right now for its channel
(`channel_register`); `send_replies` asks `channel_adapter(ticket.channel)` once per run. A channel
nobody registered gets `UnconfiguredChannel`: its replies fail at once with a reason agents can
read, instead of waiting in the queue forever.

A channel may also declare content rules (`reply_rules`): the reply service refuses a reply they
flag unless the agent acknowledges it; and, in words, its rules for a reply (`reply_guidelines`),
which the AI drafter (`tickets.assist`) gives the model.

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


@dataclass(frozen=True)
class PolicyViolation:
    """A passage of a reply that the channel would refuse (its content rules): `text` is
    `body[start:end]`, `rule` a machine-readable name ("link", "email_address", "phone_number", "html")."""

    rule: str
    text: str
    start: int
    end: int
    message: str = ""  # for people: what to change


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
ReplyRules = Callable[[str], list[PolicyViolation]]
_factories: dict[str, AdapterFactory] = {}
_reply_rules: dict[str, ReplyRules] = {}
_reply_guidelines: dict[str, str] = {}


def channel_register(
    channel: str, factory: AdapterFactory, *, reply_rules: ReplyRules | None = None, reply_guidelines: str = ""
) -> None:
    """Declares where replies of tickets on `channel` go; `factory` is called once per send run and
    may raise ImproperlyConfigured (the command exits with code 2 and that message). `reply_rules`
    finds what the channel would refuse in a reply's text, checked before the reply is queued;
    `reply_guidelines` says the channel's rules for a reply as a list of lines for a writer."""
    _factories[channel] = factory
    if reply_rules is not None:
        _reply_rules[channel] = reply_rules
    else:
        _reply_rules.pop(channel, None)
    _reply_guidelines[channel] = reply_guidelines


def channel_reply_guidelines(channel: str) -> str:
    """The channel's rules for a reply, in words (empty when it declares none)."""
    return _reply_guidelines.get(channel, "")


def channel_reply_violations(channel: str, text: str) -> list[PolicyViolation]:
    """What `channel`'s content rules refuse in `text` (none when the channel declares no rules)."""
    rules = _reply_rules.get(channel)
    return rules(text) if rules is not None else []


def channel_adapter(channel: str) -> ChannelAdapter:
    """The adapter that delivers replies of tickets on `channel`, as configured right now."""
    factory = _factories.get(channel)
    if factory is None:
        return UnconfiguredChannel(f"No sender for channel {channel!r}: the reply was not delivered")
    return factory()
