"""Keyset ("cursor") pagination of the ticket list.

A page ends at a row's (sort value, id); the next page asks for rows strictly after it in the
order `sort value, id` (NULL values last). Tickets that arrive meanwhile sort before that point
(newer `last_message_at`) or land in their place without shifting the rest, so a client walking
the pages never sees a ticket twice nor misses one that existed when it started. (A ticket whose
sort value changes while the client walks — a new buyer message — moves, as in every inbox.)

The cursor is opaque to clients: url-safe base64 of a small JSON object. It carries only a sort
value and an id; the query is always scoped to the caller's tenant, so a forged cursor cannot
reach another tenant's rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from keybuzz.errors import ApplicationError

# ordering parameter → (field, descending)
ORDERINGS: dict[str, tuple[str, bool]] = {
    "-last_message_at": ("last_message_at", True),  # default: newest activity first
    "last_message_at": ("last_message_at", False),
    "response_due_at": ("response_due_at", False),  # most urgent first; no due time last
    "-response_due_at": ("response_due_at", True),
}
DEFAULT_ORDERING = "-last_message_at"
MAX_ID = 2**63 - 1  # a bigint
MAX_CURSOR_LENGTH = 512  # ours are about 100 characters


class InvalidCursorError(ApplicationError):
    code = "invalid_cursor"


@dataclass(frozen=True)
class Cursor:
    ordering: str
    value: datetime | None
    last_id: int


def encode_cursor(cursor: Cursor) -> str:
    payload = {"o": cursor.ordering, "v": cursor.value.isoformat() if cursor.value else None, "i": cursor.last_id}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, ordering: str) -> Cursor:
    """The cursor in `token`, or InvalidCursorError: a client may send anything here."""
    if len(token) > MAX_CURSOR_LENGTH:
        raise InvalidCursorError("Invalid cursor: use the `next` link of the previous page.")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        value, last_id = payload["v"], payload["i"]
        parsed = parse_datetime(value) if value is not None else None
        if value is not None and (parsed is None or timezone.is_naive(parsed)):
            raise ValueError
        if isinstance(last_id, bool) or not isinstance(last_id, int) or not 0 <= last_id <= MAX_ID:
            raise ValueError
        # In UTC: PostgreSQL refuses UTC offsets beyond ±15:59 that Python accepts.
        cursor = Cursor(ordering=str(payload["o"]), value=parsed.astimezone(UTC) if parsed else None, last_id=last_id)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError, OverflowError):
        raise InvalidCursorError("Invalid cursor: use the `next` link of the previous page.") from None
    if cursor.ordering != ordering:
        raise InvalidCursorError("Invalid cursor: it belongs to another ordering; start again without a cursor.")
    return cursor


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None


def page_of(rows: list[Any], *, ordering: str, size: int, more: bool | None = None) -> Page:
    """The page of up to size + 1 rows read in `ordering`: the extra row only says there is a next page
    (`more`: whether there is one, when the rows were read after the query that knew it)."""
    next_cursor = None
    more = len(rows) > size if more is None else more
    rows = rows[:size]
    if more and rows:
        field, _ = ORDERINGS[ordering]
        last = rows[-1]
        value, last_id = (last[field], last["id"]) if isinstance(last, dict) else (getattr(last, field), last.pk)
        next_cursor = encode_cursor(Cursor(ordering=ordering, value=value, last_id=last_id))
    return Page(rows=rows, next_cursor=next_cursor)
