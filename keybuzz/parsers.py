"""The API's JSON parser: DRF's, except that JSON nested deeper than Python can recurse is a 400
like any other malformed body (DRF's lets RecursionError through as a 500), and that every body
that cannot be read answers the API's `invalid_input` code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply", code="invalid_input") from None
        except ParseError as exc:
            raise ParseError(exc.detail, code="invalid_input") from None
