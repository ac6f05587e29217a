"""`python manage.py poll_amazon --once`: cron's entry point to the Amazon poller."""

from __future__ import annotations

import json
import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from marketplaces.poller import LOG, PollerConfigurationError, poll_run, worker_name

logger = logging.getLogger("marketplaces.poller")


class Command(BaseCommand):
    help = (
        "Poll due Amazon connections for buyer messages and file them as tickets. Exit 0 when every "
        "claimed connection was polled, 1 when some failed, 2 on a configuration error."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="One run, then exit (what cron calls)")
        parser.add_argument("--interval", type=int, default=300, help="Seconds between runs without --once")
        parser.add_argument("--tenant", help="Only this tenant's connections (tenant id)")
        parser.add_argument("--connection", help="Only this connection (connection id)")
        parser.add_argument("--limit", type=int, help="Poll at most this many connections per run")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Ignore the polling interval and the failure backoff (not other workers' leases)",
        )
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON")

    def handle(
        self,
        *args,
        once: bool,
        interval: int,
        tenant: str | None,
        connection: str | None,
        limit: int | None,
        force: bool,
        json: bool,
        **options,
    ) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1", returncode=2)
        if interval < 1:
            raise CommandError("--interval must be at least 1 second", returncode=2)
        stop = threading.Event()
        if not once:
            # Stop after the connection in hand: no half-written poll, no lease left to expire.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        worker = worker_name()
        failed = False
        while True:
            try:
                summary = poll_run(
                    limit=limit,
                    tenant_id=tenant,
                    connection_id=connection,
                    force=force,
                    should_stop=stop.is_set,
                    worker=worker,
                )
            except PollerConfigurationError as exc:
                raise CommandError(f"{LOG} Configuration error: {exc}", returncode=2) from None
            failed = summary.failures > 0
            self.stdout.write(self._render(summary, json))
            if once or stop.wait(interval):
                break
        if failed:
            raise CommandError(
                f"{LOG} {summary.failures} connection(s) failed: see the error lines above", returncode=1
            )

    @staticmethod
    def _render(summary, as_json: bool) -> str:
        if as_json:
            return json.dumps(summary.as_dict(), sort_keys=True)
        return summary.line()
