"""`python manage.py keybuzz_metrics [--json] [--tenant SLUG]`: the runbook's monitoring queries
and the pipeline's health figures (operations)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from operations.presenters import figures_json, figures_text
from operations.selectors import ops_figures, tenant_by_slug


class Command(BaseCommand):
    help = (
        "Print the operators' figures: active Amazon connections, messages polled and Amazon tickets "
        "today, connections in ERROR / NEEDS_REAUTH, the oldest last poll, quarantine, overdue tickets, "
        "the poller's runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object instead of aligned text")
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant's figures (the poller's stay global)")

    def handle(self, *args: Any, json: bool, tenant: str | None, **options: Any) -> None:
        scope = None
        if tenant:
            scope = tenant_by_slug(tenant)
            if scope is None:
                raise CommandError(f"No tenant with the slug {tenant!r}", returncode=2)
        figures = ops_figures(tenant=scope)
        self.stdout.write(figures_json(figures) if json else figures_text(figures))
