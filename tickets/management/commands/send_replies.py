"""`python manage.py send_replies --once`: deliver the agents' queued replies (cron, like the poller).

Exit codes: 0 every claimed reply was sent (or nothing was due); 1 some send failed (retry
scheduled or FAILED); 2 a configuration error (the line says what to fix). Without --once it loops
every --interval seconds and stops cleanly on SIGTERM/SIGINT after the reply in hand.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from tickets.services import SendSummary, replies_send_due, replies_send_loop


class Command(BaseCommand):
    help = "Send queued ticket replies through their channel (mock with AMAZON_USE_MOCK=true)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="One run, then exit (for cron).")
        parser.add_argument("--interval", type=float, default=60.0, help="Seconds between runs in loop mode.")
        parser.add_argument("--limit", type=int, default=None, help="At most this many replies per run.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print each run's summary as one JSON line."
        )

    def handle(self, *args, once: bool, interval: float, limit: int | None, as_json: bool, **options) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1", returncode=2)
        try:
            if once:
                summary = replies_send_due(limit=limit)
                self._print(summary, as_json=as_json)
                if not summary.ok:
                    sys.exit(1)
                return
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            replies_send_loop(
                interval=interval, stop=stop, limit=limit, on_run=lambda summary: self._print(summary, as_json=as_json)
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=2) from None

    def _print(self, summary: SendSummary, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(summary.as_dict()))
        else:
            self.stdout.write(
                f"send_replies: claimed={summary.claimed} sent={summary.sent} retrying={summary.retrying} "
                f"failed={summary.failed} lost={summary.lost} seconds={summary.seconds:.3f}"
            )
