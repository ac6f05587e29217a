"""From what a source fetched to what may be stored: each raw message parsed on its own, so one
unreadable message is quarantined with its reason and never blocks the others. A message is a
buyer's (filed as a ticket message), a notice (recorded on the connection's mailbox activity), or
unreadable (quarantined): nothing fetched is dropped silently."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from marketplaces.sources import MessageParseError, MessageSource, Notice, ParsedMessage

MAX_ERROR_LENGTH = 1000
# Older or future-dated messages are garbage from the source, not buyers' messages.
EARLIEST_SENT_AT = datetime(2000, 1, 1, tzinfo=UTC)

RawMessage = dict[str, Any]


def clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters; a buyer's message must not fail the batch for it.
    return text.replace("\x00", "")


def clean_json(value: Any, *, for_quarantine: bool = False) -> Any:
    """Drops NUL characters; for the quarantine, also the non-finite numbers JSON cannot hold
    (a payload carrying them is refused and quarantined, and its copy there must still store)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v, for_quarantine=for_quarantine) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, for_quarantine=for_quarantine) for v in value]
    if for_quarantine and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validated(parsed: ParsedMessage | Notice) -> ParsedMessage | Notice:
    """The checks every source's output must pass before it is stored."""
    if not parsed.external_id or len(parsed.external_id) > 255:
        raise MessageParseError("external id is empty or longer than 255 characters")
    if isinstance(parsed, Notice):
        return parsed
    if not parsed.thread_key or len(parsed.thread_key) > 255:
        raise MessageParseError("thread key is empty or longer than 255 characters")
    if timezone.is_naive(parsed.sent_at):
        raise MessageParseError("sent time has no time zone")
    if not EARLIEST_SENT_AT <= parsed.sent_at <= timezone.now() + timedelta(days=1):
        raise MessageParseError(f"sent time out of range: {parsed.sent_at.isoformat()}")
    return parsed


@dataclass
class ParsedBatch:
    good: list[tuple[RawMessage, ParsedMessage]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    bad: list[tuple[RawMessage, str]] = field(default_factory=list)  # the raw message and why


def parse_all(source: MessageSource, raws: list[RawMessage]) -> ParsedBatch:
    """Parses every message; a message repeated in the batch (a page served twice) is kept once."""
    batch = ParsedBatch()
    seen: set[str] = set()
    for raw in raws:
        try:
            parsed = validated(source.parse(raw))
        except MessageParseError as exc:
            batch.bad.append((raw, str(exc)))
            continue
        except Exception as exc:  # a parser bug on one message must not block the mailbox
            batch.bad.append((raw, f"parser failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]))
            continue
        if parsed.external_id in seen:
            continue
        seen.add(parsed.external_id)
        if isinstance(parsed, Notice):
            batch.notices.append(parsed)
        else:
            batch.good.append((raw, parsed))
    return batch
