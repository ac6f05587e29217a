"""The retry rule every worker follows: exponential backoff with a cap."""

from __future__ import annotations

from datetime import timedelta


def backoff_delay(failures: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """The wait after the `failures`-th consecutive failure (1-based): base, 2 * base, 4 * base, …,
    never more than `max_seconds`."""
    seconds = base_seconds * 2 ** max(failures - 1, 0)
    return timedelta(seconds=min(seconds, max_seconds))
