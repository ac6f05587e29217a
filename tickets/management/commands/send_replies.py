"""`python manage.py send_replies --once`: deliver the agents' queued replies (cron, like the poller).

Exit codes: 0 every claimed reply was sent (or nothing was due); 1 some send failed (retry
scheduled or FAILED); 2 a configuration error (the line says what to fix). Without --once it loops
every --interval seconds and stops cleanly on SIGTERM/SIGINT after the reply in hand.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from keybuzz.workers.command import WorkerCommand
from keybuzz.workers.runner import StopCheck
from tickets.delivery import LOG, SendSummary, replies_send_due


class Command(WorkerCommand[SendSummary]):
    help = "Send queued ticket replies through their channel (mock with AMAZON_USE_MOCK=true)."
    log_prefix = LOG
    items = "replies"
    logger_name = "tickets.delivery"
    default_interval = 60.0
    configuration_errors = (ImproperlyConfigured,)

    def run(self, *, worker: str, limit: int | None, should_stop: StopCheck, **options: Any) -> SendSummary:
        return replies_send_due(worker=worker, limit=limit, should_stop=should_stop)

    def render(self, result: SendSummary, *, as_json: bool) -> str:
        return json.dumps(result.as_dict()) if as_json else result.line()

    def finish(self, result: SendSummary, *, once: bool) -> None:
        if once and not result.ok:
            sys.exit(1)
