"""Message sources for the poller tests, plugged in through AMAZON_MESSAGE_SOURCE like a real one.

They stand where Amazon's API would be (the process boundary); the poller, the ingestion and the
token provider under test are the real ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from marketplaces.sources import FetchResult
from marketplaces.sources.base import ConnectionSnapshot
from marketplaces.sources.mock import MockAmazonSource

BASE_TIME = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def raw_message(n: int, *, thread: str | None = None, **overrides: Any) -> dict[str, Any]:
    message = {
        "messageId": f"msg-{n}",
        "threadId": thread or f"order:thread-{n}",
        "amazonOrderId": f"402-0000000-{n:07d}",
        "buyerName": f"Buyer {n}",
        "buyerEmail": f"buyer{n}@marketplace.amazon.example",
        "subject": f"Question {n}",
        "body": f"Hello, question number {n}",
        "sentAt": (BASE_TIME + timedelta(minutes=n)).isoformat(),
    }
    message.update(overrides)
    return message


class ScriptedSource(MockAmazonSource):
    """Answers what a test scripted per seller id: a list of raw messages, or an exception."""

    needs_access_token = False
    script: dict[str, list[dict[str, Any]] | Exception] = {}
    calls: list[tuple[str, str | None]] = []

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult:
        type(self).calls.append((connection.selling_partner_id, access_token))
        answer = self.script.get(connection.selling_partner_id, [])
        if isinstance(answer, Exception):
            raise answer
        return FetchResult(raw_messages=list(answer), next_cursor=f"after:{len(answer)}")


class TokenScriptedSource(ScriptedSource):
    """Like a real SP-API source: needs an LWA access token for every fetch."""

    needs_access_token = True
