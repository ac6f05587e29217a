"""The message-source interface: fetch raw messages since a cursor, parse one raw message.

A source never touches the database. It receives a snapshot of the connection and its cursor,
returns the raw messages and the cursor to store once they are safely committed, and parses
each raw message on its own so that one bad message can be quarantined without blocking others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class SourceError(Exception):
    """The source could not fetch (Amazon down, throttled, …); retried on a later run."""


class SourceConfigurationError(Exception):
    """The operator must fix the configuration before any connection can be polled."""


class MessageParseError(Exception):
    """One raw message cannot become an ExternalMessage; it is quarantined with this reason."""


@dataclass(frozen=True)
class ConnectionSnapshot:
    id: str
    tenant_id: str
    selling_partner_id: str
    region: str
    marketplace_ids: tuple[str, ...]
    cursor: str


@dataclass(frozen=True)
class ParsedMessage:
    external_id: str
    thread_key: str
    sent_at: datetime
    body: str
    subject: str = ""
    order_id: str = ""
    sender: str = ""
    sender_name: str = ""


@dataclass(frozen=True)
class FetchResult:
    raw_messages: list[dict[str, Any]]
    # Stored only after the messages are committed: a crash in between re-fetches them, and the
    # unique constraints drop the copies.
    next_cursor: str


class MessageSource(Protocol):
    # True when fetch() needs an LWA access token (the poller refreshes and caches it).
    needs_access_token: bool

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult: ...

    def parse(self, raw: dict[str, Any]) -> ParsedMessage: ...


def get_message_source() -> MessageSource:
    """The configured source: AMAZON_MESSAGE_SOURCE (a dotted path), else the mock when
    AMAZON_USE_MOCK is on."""
    path = settings.AMAZON_MESSAGE_SOURCE or (
        "marketplaces.sources.mock.MockAmazonSource" if settings.AMAZON_USE_MOCK else ""
    )
    if not path:
        raise SourceConfigurationError(
            "No Amazon message source is configured: set AMAZON_USE_MOCK=true "
            "(the SP-API source is not available yet) or AMAZON_MESSAGE_SOURCE"
        )
    try:
        return import_string(path)()
    except ImportError:
        raise SourceConfigurationError(f"AMAZON_MESSAGE_SOURCE cannot be imported: {path}") from None
