"""The tickets app's settings, read in one place.

The values are defined (from the environment) in the "# --- Tickets" block of keybuzz/settings.py;
the defaults repeated here only keep the app working where that block is absent.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


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
    base = int(getattr(settings, "TICKETS_SEND_BACKOFF_SECONDS", 60))
    cap = int(getattr(settings, "TICKETS_SEND_BACKOFF_MAX_SECONDS", 3600))
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))


def send_lease() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "TICKETS_SEND_LEASE_SECONDS", 300)))


def send_batch_size() -> int:
    return int(getattr(settings, "TICKETS_SEND_BATCH_SIZE", 100))


def amazon_adapter_path() -> str:
    return str(getattr(settings, "TICKETS_AMAZON_ADAPTER", ""))


def amazon_use_mock() -> bool:
    return bool(getattr(settings, "AMAZON_USE_MOCK", False))
