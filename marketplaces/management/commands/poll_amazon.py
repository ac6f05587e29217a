"""`python manage.py poll_amazon --once`: cron's entry point to the Amazon poller.

Exit codes: 0 every claimed connection was polled, 1 some failed (their error lines are above the
summary), 2 a configuration error (the line says what to fix).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from keybuzz.workers.command import WorkerCommand
from keybuzz.workers.runner import StopCheck
from marketplaces.polling import LOG, PollerConfigurationError, PollSummary, poll_run


class Command(WorkerCommand[PollSummary]):
    help = (
        "Poll due Amazon connections for buyer messages and file them as tickets. Exit 0 when every "
        "claimed connection was polled, 1 when some failed, 2 on a configuration error."
    )
    log_prefix = LOG
    items = "connections"
    logger_name = "marketplaces.poller"
    default_interval = 300.0
    configuration_errors = (PollerConfigurationError,)

    def add_worker_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant's connections (tenant id)")
        parser.add_argument("--connection", help="Only this connection (connection id)")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Ignore the polling interval and the failure backoff (not other workers' leases)",
        )

    def worker_option_names(self) -> tuple[str, ...]:
        return ("tenant", "connection", "force")

    def run(self, *, worker: str, limit: int | None, should_stop: StopCheck, **options: Any) -> PollSummary:
        return poll_run(
            limit=limit,
            tenant_id=options["tenant"],
            connection_id=options["connection"],
            force=options["force"],
            should_stop=should_stop,
            worker=worker,
        )

    def render(self, result: PollSummary, *, as_json: bool) -> str:
        return json.dumps(result.as_dict(), sort_keys=True) if as_json else result.line()

    def configuration_message(self, exc: Exception) -> str:
        return f"{LOG} Configuration error: {exc}"

    def finish(self, result: PollSummary, *, once: bool) -> None:
        if result.failures:
            raise CommandError(f"{LOG} {result.failures} connection(s) failed: see the error lines above", returncode=1)
