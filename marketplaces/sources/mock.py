"""A deterministic stand-in for Amazon (AMAZON_USE_MOCK=true).

Each connection receives batches of buyer messages. A poll yields the next batch only when the
previous one is at least one poll window old (AMAZON_MOCK_WINDOW_SECONDS, default 300 s, cron's
period), so the runbook's check holds: the first poll of a connection gives 3 messages in 3
threads, a rerun in the same window gives nothing, and each later window gives a few more, the
first of them a follow-up in an existing thread. Message ids derive from the connection and the
batch number, so a batch fetched again after a crash is the same batch.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from marketplaces.sources.base import ConnectionSnapshot, FetchResult, MessageParseError, ParsedMessage

BUYERS = ["Marie Dupont", "John Carter", "Lukas Weber", "Giulia Rossi", "Sofia García", "Yuki Tanaka"]
TOPICS = [
    ("Where is my order?", "Hello, my order {order} has not arrived yet. Can you tell me where it is?"),
    ("Item arrived damaged", "The item from order {order} arrived broken. What can you do?"),
    ("Return request", "I would like to return order {order}. How do I proceed?"),
    ("Wrong size", "I received the wrong size for order {order}. Can I exchange it?"),
    ("Invoice needed", "Could you send me the invoice for order {order}, please?"),
]
FOLLOW_UPS = [
    "Any news about this? I am still waiting.",
    "Thank you, but I still have no answer for order {order}.",
    "Hello again, could you please reply?",
]


def _digits(seed: str) -> str:
    """At least 70 decimal digits derived from the seed: a thread's order number, buyer and email."""
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16)).rjust(78, "0")


def _parse_cursor(cursor: str) -> tuple[int, datetime | None]:
    """`batch=<n>;at=<iso time>` → (last batch served, when)."""
    parts = dict(item.split("=", 1) for item in cursor.split(";") if "=" in item)
    try:
        return int(parts.get("batch", 0)), parse_datetime(parts.get("at", "")) if parts.get("at") else None
    except ValueError:
        return 0, None


class MockAmazonSource:
    needs_access_token = False

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult:
        now = timezone.now()
        last_batch, last_at = _parse_cursor(connection.cursor)
        window = timedelta(seconds=settings.AMAZON_MOCK_WINDOW_SECONDS)
        if last_at is not None and now - last_at < window:
            return FetchResult(raw_messages=[], next_cursor=connection.cursor)
        batch = last_batch + 1
        raws = [self._message(connection, batch, index, now) for index in range(settings.AMAZON_MOCK_MESSAGES_PER_POLL)]
        return FetchResult(raw_messages=raws, next_cursor=f"batch={batch};at={now.isoformat()}")

    def _message(self, connection: ConnectionSnapshot, batch: int, index: int, now: datetime) -> dict[str, Any]:
        per_batch = settings.AMAZON_MOCK_MESSAGES_PER_POLL
        follow_up = batch > 1 and index == 0
        # A follow-up goes to one of the first batch's threads; other messages open new threads.
        thread_no = (batch - 2) % per_batch if follow_up else (batch - 1) * per_batch + index
        digits = _digits(f"{connection.id}:{thread_no}")
        order = f"{digits[:3]}-{digits[3:10]}-{digits[10:17]}"
        buyer = BUYERS[int(digits[17:21]) % len(BUYERS)]
        subject, text = TOPICS[thread_no % len(TOPICS)]
        if follow_up:
            text = FOLLOW_UPS[batch % len(FOLLOW_UPS)]
        return {
            "messageId": f"mock-{connection.id}-{batch}-{index}",
            "threadId": f"order:{order}",
            "amazonOrderId": order,
            "buyerName": buyer,
            "buyerEmail": f"{digits[21:33]}@marketplace.amazon.example",
            "subject": f"Re: {subject}" if follow_up else subject,
            "body": text.format(order=order),
            "sentAt": (now - timedelta(seconds=per_batch - index)).isoformat(),
        }

    def parse(self, raw: dict[str, Any]) -> ParsedMessage:
        missing = [key for key in ("messageId", "threadId", "sentAt", "body") if not raw.get(key)]
        if missing:
            raise MessageParseError(f"missing {', '.join(missing)}")
        sent_at = parse_datetime(str(raw["sentAt"]))
        if sent_at is None:
            raise MessageParseError(f"sentAt is not a date-time: {str(raw['sentAt'])[:40]!r}")
        return ParsedMessage(
            external_id=str(raw["messageId"]),
            thread_key=str(raw["threadId"]),
            sent_at=sent_at,
            body=str(raw["body"]),
            subject=str(raw.get("subject", "")),
            order_id=str(raw.get("amazonOrderId", "")),
            sender=str(raw.get("buyerEmail", "")),
            sender_name=str(raw.get("buyerName", "")),
        )
