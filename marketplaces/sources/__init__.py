"""Where a connection's buyer messages come from. The poller only knows `MessageSource`."""

from marketplaces.sources.base import (
    FetchResult,
    MessageParseError,
    MessageSource,
    ParsedMessage,
    SourceConfigurationError,
    SourceError,
    get_message_source,
)

__all__ = [
    "FetchResult",
    "MessageParseError",
    "MessageSource",
    "ParsedMessage",
    "SourceConfigurationError",
    "SourceError",
    "get_message_source",
]
