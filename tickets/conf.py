"""The tickets app's settings, read in one place.

The values are defined (from the environment) in the "# --- Tickets" block of keybuzz/settings.py;
the defaults repeated here only keep the app working where that block is absent.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from keybuzz.workers.backoff import backoff_delay


def reply_max_length() -> int:
    return int(getattr(settings, "TICKETS_REPLY_MAX_LENGTH", 10_000))


def page_size() -> int:
    return int(getattr(settings, "TICKETS_PAGE_SIZE", 25))


def page_size_max() -> int:
    return int(getattr(settings, "TICKETS_PAGE_SIZE_MAX", 100))


def send_max_attempts() -> int:
    return max(1, int(getattr(settings, "TICKETS_SEND_MAX_ATTEMPTS", 5)))


def send_backoff(attempt: int) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based): base * 2^(attempt-1), capped."""
    return backoff_delay(
        attempt,
        base_seconds=int(getattr(settings, "TICKETS_SEND_BACKOFF_SECONDS", 60)),
        max_seconds=int(getattr(settings, "TICKETS_SEND_BACKOFF_MAX_SECONDS", 3600)),
    )


def send_lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "TICKETS_SEND_LEASE_SECONDS", 300)))


def send_batch_size() -> int:
    """The most replies one run sends (`--limit` overrides it)."""
    return int(getattr(settings, "TICKETS_SEND_BATCH_SIZE", 100))


def send_claim_batch() -> int:
    """Replies leased per claim within a run: small, so that concurrent senders share the queue."""
    return max(1, int(getattr(settings, "TICKETS_SEND_CLAIM_BATCH", 10)))


def upload_max_bytes() -> int:
    return int(getattr(settings, "TICKETS_UPLOAD_MAX_BYTES", 10 * 1024 * 1024))


def upload_keep() -> timedelta:
    """How long an upload waits for a reply to take it before send_replies deletes it."""
    return timedelta(hours=int(getattr(settings, "TICKETS_UPLOAD_KEEP_HOURS", 24)))


def reply_max_attachments() -> int:
    return int(getattr(settings, "TICKETS_REPLY_MAX_ATTACHMENTS", 5))
