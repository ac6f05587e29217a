"""Where a connection's buyer messages come from. The poller only knows `MessageSource`."""

from marketplaces.sources.base import (
    ConnectionSnapshot,
    FetchResult,
    MailboxSnapshot,
    MessageParseError,
    MessageSource,
    Notice,
    ParsedMessage,
    SourceConfigurationError,
    SourceError,
    default_source,
    default_source_name,
)

__all__ = [
    "ConnectionSnapshot",
    "FetchResult",
    "MailboxSnapshot",
    "MessageParseError",
    "MessageSource",
    "Notice",
    "ParsedMessage",
    "SourceConfigurationError",
    "SourceError",
    "default_source",
    "default_source_name",
]
