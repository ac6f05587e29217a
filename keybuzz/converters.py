"""URL path converters (registered by KeybuzzConfig.ready): `<id:ticket_id>` is a row id a bigint
column can hold (1 to 18 digits), so a path with a larger number is a 404 like any unknown id,
instead of a database error (a 500)."""

from __future__ import annotations


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
