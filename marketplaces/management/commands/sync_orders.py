"""`python manage.py sync_orders --once`: order context from SP-API for open Amazon tickets (cron,
next to the poller).

Exit codes: 0 every claimed order was handled (fetched, or not known to Amazon yet: retried later);
1 some call failed (throttled, Amazon or a token unavailable: retried later) or a connection lacks
the SP-API role; 2 a configuration error. Without --once it loops every --interval seconds and stops
cleanly on SIGTERM/SIGINT after the order in hand.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from keybuzz.workers.command import WorkerCommand
from keybuzz.workers.runner import StopCheck
from marketplaces.orders.sync import LOG, SyncSummary, orders_sync_due


class Command(WorkerCommand[SyncSummary]):
    help = "Fetch the orders of open Amazon tickets from SP-API (getOrder) and show them on the tickets."
    log_prefix = LOG
    items = "orders"
    logger_name = "marketplaces.orders"
    default_interval = 300.0
    configuration_errors = (ImproperlyConfigured,)

    def run(self, *, worker: str, limit: int | None, should_stop: StopCheck, **options: Any) -> SyncSummary:
        return orders_sync_due(worker=worker, limit=limit, should_stop=should_stop)

    def render(self, result: SyncSummary, *, as_json: bool) -> str:
        return json.dumps(result.as_dict()) if as_json else result.line()

    def finish(self, result: SyncSummary, *, once: bool) -> None:
        if once and not result.ok:
            sys.exit(1)
