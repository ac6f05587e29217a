"""The worker runtime shared by the cron-driven commands (`poll_amazon`, `send_replies`, …).

- `leases`: several workers on several hosts share rows of work through the database
  (`SELECT … FOR UPDATE SKIP LOCKED` and a lease expiry);
- `backoff`: how long a failed item waits before its next attempt;
- `runner`: one run (`--once`, what cron calls) or a run every `--interval` seconds until
  SIGTERM/SIGINT, which stop after the item in hand;
- `command`: the management command base class that wires the two.
"""

from __future__ import annotations

import os
import socket
import uuid


def worker_name() -> str:
    """A name unique to this process and start: host, pid and a random suffix (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
