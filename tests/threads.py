"""Running database work in several threads at once, for the races that only PostgreSQL runs for real."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connections


def race(n: int, work: Callable[[int], Any]) -> list:
    """Runs `work(i)` for i in 0..n-1 in n threads released together, each with its own database
    connection. Returns what each returned, or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:  # the outcome is the result
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    close_old_connections()
    return results
