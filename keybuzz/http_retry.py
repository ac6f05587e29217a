"""What KeyBuzz's HTTP clients (SP-API, the AI gateway) share when they retry: the wait a server
asks for (`Retry-After`), and a full-jitter backoff."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

import requests


def full_jitter(retry: int, *, base: float, cap: float) -> float:
    """Anywhere between 0 and the exponential ceiling (base, 2 x base, … up to cap) of the
    `retry`-th retry (0-based), so that clients retrying at once spread out."""
    return random.uniform(0, min(cap, base * 2**retry))  # noqa: S311 - spreading retries, not a secret


def retry_after_seconds(response: requests.Response) -> float | None:
    """The seconds the server asks to wait (`Retry-After`: seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
