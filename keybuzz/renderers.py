"""The API's JSON renderer: DRF's output, written by orjson.

DRF's renderer is `json.dumps` with DRF's Python encoder: 1.4 ms for a 100-row ticket page (91 kB)
on the 2-core benchmark machine, where orjson writes the same JSON in 0.3 ms. Same bytes in content:
compact separators, UTF-8 rather than \\u escapes (DRF's UNICODE_JSON), datetimes as DRF writes them
(`…Z` for UTC), anything else orjson does not know through DRF's own encoder, and U+2028/U+2029
escaped as DRF does. An indented answer (`Accept: application/json;
indent=4`) and anything orjson refuses (an integer past 64 bits) are left to DRF's renderer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer
from rest_framework.utils.encoders import JSONEncoder

# orjson writes datetimes, dates and times as DRF's encoder does (ISO 8601, `Z` for a zero UTC offset),
# 0.16 instead of 2.5 us each through DRF's encoder: the ticket API hands it datetime objects. One difference: an offset with seconds
# (local mean time, before about 1900) comes out rounded to the minute. Without OPT_NON_STR_KEYS, which
# slowed every answer (47 instead of 35 us for a ticket page): the rare dict with other keys (a list
# field's errors, keyed by index) is refused and goes to DRF's renderer.
_OPTIONS = orjson.OPT_UTC_Z
_default = JSONEncoder().default
# U+2028 and U+2029 in UTF-8, and the escapes DRF writes for them (JSON that is also JavaScript).
_LINE_SEPARATORS = {b"\xe2\x80\xa8": b"\\u2028", b"\xe2\x80\xa9": b"\\u2029"}
_LINE_SEPARATOR = re.compile(b"|".join(map(re.escape, _LINE_SEPARATORS)))


class JSONRenderer(DRFJSONRenderer):
    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if data is None:
            return b""
        # An indent comes as a media type parameter or in the context; DRF's get_indent parses the
        # media type for each answer otherwise.
        media_type, context = accepted_media_type or "", renderer_context or {}
        if (";" in media_type or "indent" in context) and self.get_indent(media_type, context) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            body = orjson.dumps(data, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        # A single byte first: CPython finds it with memchr (0.2 us for a 23 kB ticket page) but scans
        # for a longer one byte by byte (20 us); most answers have no 0xE2 at all.
        if b"\xe2" in body:
            body = _LINE_SEPARATOR.sub(lambda found: _LINE_SEPARATORS[found[0]], body)
        return body
