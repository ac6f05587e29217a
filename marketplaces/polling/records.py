"""What the poller leaves for the operators at the end of each run: a PollRun row and its share
of the cumulative counters.

Why the database and not prometheus_client's in-memory metrics: the poller runs from cron in
short-lived processes (possibly on several hosts), while `GET /metrics` is answered by gunicorn's
workers; a counter in the poller's memory dies with the process. prometheus_client's
multiprocess mode would need a directory shared by both (same host only) and would keep one file
per dead cron process, every five minutes, forever. A row per run and a handful of counter rows
cost four small statements per run, work across hosts and survive restarts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, F, FloatField, Value, When
from django.utils import timezone

from marketplaces.models import PollCounter, PollRun
from marketplaces.polling.log import LOG, logger

# PollRun rows are the recent history (dashboard, last run, 24-hour totals); the counters keep
# the totals for good.
POLL_RUN_RETENTION = timedelta(days=35)
# Upper bounds, in seconds, of the run-duration histogram's buckets (+Inf is the run count).
# Changing them needs the seconds_le_* counter rows deleted, or the histogram is inconsistent.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600)
# summary attribute -> counter name
SUMMED = {
    "connections": "connections",
    "fetched": "fetched",
    "new_messages": "new_messages",
    "new_tickets": "new_tickets",
    "quarantined": "quarantined",
    "recorded": "recorded",
    "ignored": "ignored",
    "skipped_old": "skipped_old",
    "failures": "failures",
}


def bucket_counter_name(bound: float) -> str:
    return f"seconds_le_{bound:g}"


def counter_deltas(
    *,
    connections: int,
    fetched: int,
    new_messages: int,
    new_tickets: int,
    quarantined: int,
    failures: int,
    seconds: float,
    recorded: int = 0,
    ignored: int = 0,
    skipped_old: int = 0,
) -> dict[str, float]:
    """What one run adds to each counter."""
    deltas: dict[str, float] = {"runs": 1, "seconds_sum": seconds}
    values = dict(
        connections=connections,
        fetched=fetched,
        new_messages=new_messages,
        new_tickets=new_tickets,
        quarantined=quarantined,
        recorded=recorded,
        ignored=ignored,
        skipped_old=skipped_old,
        failures=failures,
    )
    deltas.update({SUMMED[key]: value for key, value in values.items()})
    deltas.update({bucket_counter_name(bound): 1 if seconds <= bound else 0 for bound in DURATION_BUCKETS})
    return deltas


def _counters_add(deltas: dict[str, float]) -> None:
    """Adds every delta: missing rows are first inserted at zero (ON CONFLICT DO NOTHING), then one
    UPDATE adds to all of them; row locks make concurrent runs add up, even on the very first run.
    Two statements every time, so a run's query count does not depend on history."""
    PollCounter.objects.bulk_create([PollCounter(name=name, value=0.0) for name in deltas], ignore_conflicts=True)
    increment = Case(
        *[When(name=name, then=Value(float(delta))) for name, delta in deltas.items()],
        default=Value(0.0),
        output_field=FloatField(),
    )
    PollCounter.objects.filter(name__in=deltas).update(value=F("value") + increment)


def poll_run_record(
    *,
    worker: str,
    started_at: datetime,
    connections: int,
    fetched: int,
    new_messages: int,
    new_tickets: int,
    quarantined: int,
    failures: int,
    seconds: float,
    recorded: int = 0,
    ignored: int = 0,
    skipped_old: int = 0,
    finished_at: datetime | None = None,
) -> PollRun | None:
    """Stores the run and adds it to the counters. Never raises: the run's work is done and
    committed whatever happens here; a failure is logged and the run is only missing from the
    metrics."""
    finished_at = finished_at or timezone.now()
    try:
        with transaction.atomic():
            run = PollRun.objects.create(
                started_at=started_at,
                finished_at=finished_at,
                worker=worker[:128],
                connections=connections,
                fetched=fetched,
                new_messages=new_messages,
                new_tickets=new_tickets,
                quarantined=quarantined,
                recorded=recorded,
                ignored=ignored,
                skipped_old=skipped_old,
                failures=failures,
                seconds=seconds,
            )
            _counters_add(
                counter_deltas(
                    connections=connections,
                    fetched=fetched,
                    new_messages=new_messages,
                    new_tickets=new_tickets,
                    quarantined=quarantined,
                    recorded=recorded,
                    ignored=ignored,
                    skipped_old=skipped_old,
                    failures=failures,
                    seconds=seconds,
                )
            )
        PollRun.objects.filter(finished_at__lt=finished_at - POLL_RUN_RETENTION).delete()
    except Exception:
        logger.exception("%s Could not record the run's metrics (the run itself completed)", LOG)
        return None
    return run
