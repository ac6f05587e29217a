"""One run, or a run every interval until a signal: the loop of every cron-driven worker.

`--once` is what cron calls: one run, its result, exit. Without it the worker runs every
`interval` seconds until SIGTERM or SIGINT; a run in progress is told to stop (`should_stop`),
finishes the item in hand and gives the rest of its claim back, so nothing is left half written
and no lease is left to expire. In loop mode a database error, or a dependency down
(`RunUnavailable`), ends that run only: the database may be restarting, and a long-running
worker waits for its next turn instead of dying.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError

R = TypeVar("R")


class RunUnavailable(Exception):
    """A run could not start because something it needs is down (the secret store, say); the next
    run may succeed. `str()` is safe to log. In loop mode the worker waits for its next turn;
    with --once the command exits 1 with that line."""


StopCheck = Callable[[], bool]


def run_worker(
    *,
    once: bool,
    interval: float,
    run: Callable[[StopCheck], R],
    report: Callable[[R], None],
    logger: logging.Logger,
    log_prefix: str,
    stop: threading.Event | None = None,
) -> R | None:
    """Calls `run(should_stop)` once, or every `interval` seconds until SIGTERM/SIGINT (or until
    `stop` is set); `report` gets each run's result. Returns the last result (None if no run
    finished)."""
    if once:
        result = run(lambda: False)
        report(result)
        return result

    stop = stop or threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    last: R | None = None
    try:
        while not stop.is_set():
            try:
                last = run(stop.is_set)
            except (DatabaseError, RunUnavailable) as exc:
                logger.error("%s Run error: %s: %s", log_prefix, type(exc).__name__, exc)
            else:
                report(last)
            stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return last
