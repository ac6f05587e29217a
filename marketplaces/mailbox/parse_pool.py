"""Parsing relay mails in worker processes, so that a poller run uses every core.

The poller's threads wait on the network well together, but parsing a mail is pure Python (0.6 ms
a mail on average, MIME and charsets mostly) and threads share one interpreter lock: measured on a
2-core machine (benchmarks/imap_ingest.py, 100 mailboxes x 20 mails), parsing in the threads made
the IMAP pass CPU-bound on one core at 0.15 of the mock source's rate; a pool of processes parses
while the threads fetch and file. `AMAZON_MAILBOX_PARSE_PROCESSES` sets its size (0: parse in the
calling thread, as tests of the parser itself do).

The processes come from a `forkserver` (never a fork of the poller itself, whose threads may hold
locks), import only the parser, and exit within a second of the poller, however it ended. A process that dies (out of memory on a hostile mail) breaks the
pool: that batch is parsed again in the calling thread and the next batch gets a new pool.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.conf import settings

from marketplaces.mailbox.relay import RelayMail, UnreadableMail, parse_relay_mail

logger = logging.getLogger("marketplaces.mailbox")

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def parse_outcome(raw: bytes) -> RelayMail | UnreadableMail:
    """The parsed mail, or why it is unreadable (returned, not raised: it crosses a process boundary)."""
    try:
        return parse_relay_mail(raw)
    except UnreadableMail as exc:
        return exc


def parse_all(raws: Sequence[bytes]) -> list[RelayMail | UnreadableMail]:
    """Parses the mails, in order, in the pool when there is one."""
    processes = settings.AMAZON_MAILBOX_PARSE_PROCESSES
    if processes <= 0 or len(raws) < 2:
        return [parse_outcome(raw) for raw in raws]
    pool = _get_pool(processes)
    try:
        # One chunk per process: each chunk costs the poller's interpreter, under the lock its polling
        # threads share, a pickling in the executor's feeder thread and wake-ups of its manager thread
        # and of the caller. Measured (benchmarks/imap_ingest.py, 100 mailboxes x 20 mails, 2
        # processes): four chunks per process cost those threads 0.30 s of CPU per pass, one 0.08 s.
        # A caller alone still keeps every process at work, and many callers keep them all busy.
        return list(pool.map(parse_outcome, raws, chunksize=-(-len(raws) // processes)))
    except BrokenProcessPool:
        logger.error("Mail parsing process died; parsing this batch in the poller and starting a new pool")
        _discard(pool)
        return [parse_outcome(raw) for raw in raws]


def _get_pool(processes: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != processes:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["marketplaces.mailbox.relay"])
            _pool = ProcessPoolExecutor(
                max_workers=processes, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
            _pool_size = processes
        return _pool


def _exit_with(poller_pid: int) -> None:
    """In each parsing process: exit as soon as the poller is gone. A poller killed with SIGKILL (the
    OOM killer, a supervisor's timeout) cannot stop its pool, and an idle process waiting for work
    would otherwise outlive it for good (holding the poller's log file open)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if not _alive(poller_pid):
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-poller", daemon=True).start()


def _alive(pid: int) -> bool:
    """Running: a dead poller not yet reaped by its parent is a zombie, which kill(pid, 0) still finds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def _shutdown() -> None:
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
