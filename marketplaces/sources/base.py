"""The message-source interface: fetch raw messages since a cursor, parse one raw message.

A source never touches the database. It receives a snapshot of the connection and its cursor,
returns the raw messages and the cursor to store once they are safely committed, and parses
each raw message on its own so that one bad message can be quarantined without blocking others.

Which source reads a connection: its relay mailbox over IMAP (`marketplaces.sources.imap`) when it
has one; else `default_source()`: `AMAZON_MESSAGE_SOURCE` when set (a dotted path), else the mock
when `AMAZON_USE_MOCK` is on, else none (the connection waits for a mailbox and is not claimed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from tickets.attachments import StoredFile


class SourceError(Exception):
    """The source could not fetch (Amazon down, throttled, mailbox unreachable…); retried later."""

    # True when only the operator or the seller can fix it (a refused login): retried rarely.
    needs_attention = False
    code = "source_error"  # machine-readable, shown with the message (e.g. "mailbox_auth_failed")


class SourceConfigurationError(Exception):
    """The operator must fix the configuration before any connection can be polled."""


class MessageParseError(Exception):
    """One raw message cannot become an ExternalMessage; it is quarantined with this reason."""


@dataclass(frozen=True)
class MailboxSnapshot:
    host: str
    port: int
    security: str
    username: str
    folder: str
    secret_ref: str
    has_error: bool = False  # a last error is shown: a successful poll clears it


@dataclass(frozen=True)
class ConnectionSnapshot:
    id: str
    tenant_id: str
    selling_partner_id: str
    region: str
    marketplace_ids: tuple[str, ...]
    cursor: str
    mailbox: MailboxSnapshot | None = None


@dataclass(frozen=True)
class ParsedMessage:
    """A buyer's message: it is filed as a ticket message."""

    external_id: str
    thread_key: str
    sent_at: datetime
    body: str
    subject: str = ""
    order_id: str = ""
    sender: str = ""
    sender_name: str = ""
    attachments: tuple[StoredFile, ...] = ()
    # What to keep as ExternalMessage.raw (default: the raw message itself).
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class Notice:
    """A message that is not a buyer's (Amazon's notifications, delivery failures, copies of replies
    written in Seller Central, mail to ignore): recorded on the connection's activity, no ticket."""

    external_id: str
    kind: str  # marketplaces.models.MailboxActivityKind
    reason: str
    sent_at: datetime | None = None
    sender: str = ""
    subject: str = ""
    order_id: str = ""
    relay_address: str = ""
    refers_to_message_id: str = ""
    notification_type: str = ""
    text: str = ""
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchResult:
    raw_messages: list[dict[str, Any]]
    # Stored only after the messages are committed: a crash in between re-fetches them, and the
    # unique constraints drop the copies.
    next_cursor: str
    # Messages the source chose not to bring (a mailbox's history older than the backfill window).
    skipped_old: int = 0


class MessageSource(Protocol):
    # True when fetch() needs an LWA access token (the poller refreshes and caches it).
    needs_access_token: bool

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult: ...

    def parse(self, raw: dict[str, Any]) -> ParsedMessage | Notice: ...


def _configured(path: str) -> MessageSource:
    try:
        source: MessageSource = import_string(path)()
    except ImportError:
        raise SourceConfigurationError(f"AMAZON_MESSAGE_SOURCE cannot be imported: {path}") from None
    return source


def default_source_name() -> str:
    """What reads the connections without a mailbox, in words ("" when nothing does)."""
    if settings.AMAZON_MESSAGE_SOURCE:
        return settings.AMAZON_MESSAGE_SOURCE.rsplit(".", 1)[-1]
    return "mock" if settings.AMAZON_USE_MOCK else ""


def default_source() -> MessageSource | None:
    """The source of connections without a mailbox: AMAZON_MESSAGE_SOURCE, else the mock when
    AMAZON_USE_MOCK is on, else None. Raises SourceConfigurationError."""
    if settings.AMAZON_MESSAGE_SOURCE:
        return _configured(settings.AMAZON_MESSAGE_SOURCE)
    if settings.AMAZON_USE_MOCK:
        return _configured("marketplaces.sources.mock.MockAmazonSource")
    return None
