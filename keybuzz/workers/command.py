"""The management command of a cron-driven worker: `--once`, `--interval`, `--limit`, `--json`.

A subclass says what one run is (`run`), how its result is printed (`render`) and what ends the
process badly (`finish`); parsing, the loop, signals and exit code 2 on a configuration error
live here once.
"""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any, Generic, TypeVar

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from keybuzz.workers import worker_name
from keybuzz.workers.runner import RunUnavailable, StopCheck, run_worker

R = TypeVar("R")


class WorkerCommand(BaseCommand, Generic[R]):
    log_prefix: str  # starts the worker's log lines, e.g. "[Amazon Poller]"
    items: str = "items"  # what a run claims, for --limit's help
    logger_name: str
    default_interval: float
    min_interval: float = 1.0
    # Errors the operator must fix before anything can run: exit code 2 with one line.
    configuration_errors: tuple[type[Exception], ...] = ()

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="One run, then exit (what cron calls)")
        parser.add_argument(
            "--interval",
            type=float,
            default=self.default_interval,
            help=f"Seconds between runs without --once (default {self.default_interval:g})",
        )
        parser.add_argument("--limit", type=int, help=f"At most this many {self.items} per run")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print each run's summary as JSON")
        self.add_worker_arguments(parser)

    def add_worker_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options (passed to `run` as keyword arguments)."""

    def handle(self, *args: Any, once: bool, interval: float, limit: int | None, as_json: bool, **options: Any) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1", returncode=2)
        if interval < self.min_interval:
            unit = "second" if self.min_interval == 1 else "seconds"
            raise CommandError(f"--interval must be at least {self.min_interval:g} {unit}", returncode=2)
        own = {key: options[key] for key in self.worker_option_names()}
        worker = worker_name()
        try:
            last = run_worker(
                once=once,
                interval=interval,
                run=lambda should_stop: self.run(worker=worker, limit=limit, should_stop=should_stop, **own),
                report=lambda result: self.stdout.write(self.render(result, as_json=as_json)),
                logger=logging.getLogger(self.logger_name),
                log_prefix=self.log_prefix,
            )
        except self.configuration_errors as exc:
            raise CommandError(self.configuration_message(exc), returncode=2) from None
        except RunUnavailable as exc:  # --once only: the loop waits for its next turn instead
            raise CommandError(f"{self.log_prefix} Run error: {exc}", returncode=1) from None
        except DatabaseError as exc:  # the database went away mid-run: what was committed stays
            reason = " ".join(str(exc).split())[:300]
            raise CommandError(
                f"{self.log_prefix} Run error: database unavailable ({type(exc).__name__}: {reason})", returncode=1
            ) from None
        if last is not None:
            self.finish(last, once=once)

    def worker_option_names(self) -> tuple[str, ...]:
        return ()

    def run(self, *, worker: str, limit: int | None, should_stop: StopCheck, **options: Any) -> R:
        raise NotImplementedError

    def render(self, result: R, *, as_json: bool) -> str:
        raise NotImplementedError

    def configuration_message(self, exc: Exception) -> str:
        return str(exc)

    def finish(self, result: R, *, once: bool) -> None:
        """Called with the last run's result: raise CommandError (or exit) to end badly."""
