"""A reply channel for the kill tests (TICKETS_AMAZON_ADAPTER): it writes each reply it sends to
a file, the test's view of "the buyer received it". On a reply's first attempt it first says so in
another file and waits, the window in which the test kills the worker: the reply is in the
channel's hands, and nobody can tell whether the buyer will get it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tickets.channels import SendResult


class RecordingChannel:
    name = "recording"

    def send_reply(self, ticket, message) -> SendResult:
        folder = Path(os.environ["FAULTS_DIR"])
        if message.delivery_attempts == 1:
            (folder / f"claimed-{message.pk}").write_text("claimed")
            time.sleep(60)  # killed here
        with open(folder / "sent.log", "a") as sent:
            sent.write(f"{message.pk}\n")
        return SendResult(external_id=f"recorded-{message.pk}")
