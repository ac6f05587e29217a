"""The run's database connections: a few threads that do every database call of a run, for many
more threads that wait on the network.

A run polls `AMAZON_POLL_WORKERS` connections at once because each one mostly waits (an IMAP or
SP-API round trip takes 100 ms or more): with one database connection per polling thread, the
database connections would grow with that number (PostgreSQL's default limit is 100, for every
poller and web worker together). Here the polling threads never touch the database: they hand each
database step (a claim, a connection's filing or failure, a release) to `DatabaseThreads`, whose
`AMAZON_POLL_DB_CONNECTIONS` threads each hold one connection (Django's are per thread) and run one
step at a time. A step runs whole in one database thread, so its transaction is that thread's.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.db import DatabaseError, connection

T = TypeVar("T")


class Database(Protocol):
    """Where a run's database steps run: `Inline` or `DatabaseThreads`."""

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def session_setup() -> None:
    """What every connection of the poller sets once, before its first step."""
    if connection.vendor == "postgresql":
        # The cursor advances in the same transaction as the messages, so a commit lost in a
        # database crash is only fetched again on the next run; not waiting for the WAL flush at
        # every connection's commit is safe here and saves a disk sync per connection. A source
        # that acknowledges messages (deletes or flags them at the source) must not rely on this:
        # it acknowledges only after a commit made with synchronous_commit on.
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")


class Inline:
    """The calling thread's own connection (one polling thread, or SQLite): no other thread."""

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


class _Step:
    __slots__ = ("args", "context", "done", "error", "fn", "kwargs", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        # The caller's log context (tenant, connection) goes with the step to the database thread.
        self.context = contextvars.copy_context()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class DatabaseThreads:
    """`size` threads, each with its own database connection, opened at its first step (a small
    run may open fewer) and closed by `close()`. `call` blocks its caller until the step is done and
    returns its result or raises its exception, so the caller's code reads as if it ran the step."""

    def __init__(self, size: int, *, name: str = "poller-db") -> None:
        self._steps: queue.SimpleQueue[_Step | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True) for n in range(size)]
        for thread in self._threads:
            thread.start()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        step = _Step(fn, args, kwargs)
        self._steps.put(step)
        step.done.wait()
        if step.error is not None:
            raise step.error
        return step.result

    def close(self) -> None:
        """Waits for the steps already handed over, then closes every connection."""
        for _ in self._threads:
            self._steps.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        ready = False
        try:
            while (step := self._steps.get()) is not None:
                try:
                    if not ready:
                        session_setup()
                        ready = True
                    step.result = step.context.run(step.fn, *step.args, **step.kwargs)
                except BaseException as exc:  # handed to the caller, in its thread
                    step.error = exc
                finally:
                    step.done.set()
        finally:
            close_connection()


def close_connection() -> None:
    """Closes the calling thread's connection; one the database already dropped (a restart) is
    forgotten without a word: the run's error, if any, is reported once, by the run."""
    try:
        connection.close()
    except DatabaseError:
        pass
