"""Steps of the upgrade test (tests/keybuzz/test_migrations_upgrade.py), each run in its own process
against the database in DATABASE_URL:

    python -m tests.migration_upgrade seed     # with tests.legacy_settings: rows in the old schema
    python -m tests.migration_upgrade links    # with the real settings: every link, read back
    python -m tests.migration_upgrade schema   # the tables as the database describes them
    python -m tests.migration_upgrade figures_seed   # at tickets 0014: tickets and messages, no figures
    python -m tests.migration_upgrade figures        # every ticket's message figures

Each prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

SEEDED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keybuzz.settings")
    import django

    django.setup()


def seed() -> dict[str, Any]:
    """Two tenants' data as the old migrations shaped it, through the historical models of that state
    (today's models no longer match the old tables)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    apps = executor.loader.project_state(
        [("tickets", "0004_leaner_indexes"), ("marketplaces", "0007_ticket_link_on_ticketmessage_only")]
    ).apps
    Tenant = apps.get_model("keybuzz", "Tenant")
    User = apps.get_model("auth", "User")
    Connection = apps.get_model("marketplaces", "MarketplaceConnection")
    External = apps.get_model("marketplaces", "ExternalMessage")
    Ticket = apps.get_model("tickets", "Ticket")
    TicketMessage = apps.get_model("tickets", "TicketMessage")

    links: dict[str, Any] = {"tickets": {}, "messages": {}, "connections": []}
    agent = User.objects.create(username="agent-upgrade")
    for n in range(2):
        tenant = Tenant.objects.create(slug=f"upgrade-{n}", name=f"Upgrade {n}")
        connection_row = Connection.objects.create(
            tenant=tenant, selling_partner_id=f"A{n}UPGRADE", status="CONNECTED", app_source="external_test"
        )
        links["connections"].append(str(connection_row.id))
        for t in range(3):
            ticket = Ticket.objects.create(
                tenant=tenant,
                connection=connection_row,
                thread_key=f"order:{n}-{t}",
                subject=f"Order {n}-{t}",
                last_message_at=SEEDED_AT,
            )
            links["tickets"][str(ticket.id)] = str(connection_row.id)
            for m in range(2):
                external = External.objects.create(
                    tenant=tenant,
                    connection=connection_row,
                    external_id=f"m-{n}-{t}-{m}",
                    thread_key=ticket.thread_key,
                    body=f"Buyer message {m}",
                    sent_at=SEEDED_AT + timedelta(minutes=m),
                )
                message = TicketMessage.objects.create(
                    tenant=tenant,
                    ticket=ticket,
                    direction="INBOUND",
                    body=external.body,
                    external_message=external,
                    sent_at=external.sent_at,
                )
                links["messages"][str(message.id)] = external.id
            reply = TicketMessage.objects.create(
                tenant=tenant,
                ticket=ticket,
                direction="OUTBOUND",
                author=agent,
                body="Our answer",
                sent_at=SEEDED_AT + timedelta(hours=1),
                delivery_status="SENT",
            )
            links["messages"][str(reply.id)] = None
    return links


def links() -> dict[str, Any]:
    """Every link as today's code reads it."""
    from marketplaces.models import ExternalMessage, MarketplaceConnection
    from tickets.models import Ticket, TicketMessage

    return {
        "tickets": {str(t.id): str(t.connection_id) for t in Ticket.objects.all()},
        "messages": {str(m.id): m.external_message_id for m in TicketMessage.objects.all()},
        "connections": sorted(str(c.id) for c in MarketplaceConnection.objects.all()),
        # The other direction: from a stored message to its ticket.
        "filed_in": {str(e.id): e.ticket.id if e.ticket else None for e in ExternalMessage.objects.all()},
        "ticket_of_message": {str(m.id): m.ticket_id for m in TicketMessage.objects.all()},
    }


def _constraint_name(vendor: str, name: str, described: Mapping[str, Any]) -> str:
    # SQLite numbers its foreign keys in column order (fk_0, fk_1…), and a rebuilt table may order
    # its columns differently: name them by their columns instead.
    if vendor == "sqlite" and re.fullmatch(r"fk_\d+", name):
        return "fk:" + ",".join(described["columns"])
    return name


def schema() -> dict[str, Any]:
    """Columns and constraints of the product's tables, as the database reports them. Django names
    the constraints it creates deterministically, so a fresh database and an upgraded one compare
    name for name."""
    from django.db import connection

    described: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if not table.startswith(("keybuzz_", "tickets_", "marketplaces_")):
                continue
            columns = {
                c.name: [c.type_code, c.null_ok] for c in connection.introspection.get_table_description(cursor, table)
            }
            constraints = {
                _constraint_name(connection.vendor, name, c): {
                    "columns": c["columns"],
                    "unique": c["unique"],
                    "primary_key": c["primary_key"],
                    "foreign_key": list(c["foreign_key"]) if c["foreign_key"] else None,
                    "index": c["index"],
                    "check": c["check"],
                }
                for name, c in connection.introspection.get_constraints(cursor, table).items()
                # SQLite reports unnamed UNIQUE and CHECK clauses under names of its own making.
                if not (connection.vendor == "sqlite" and name.startswith("__unnamed_constraint_"))
            }
            described[table] = {"columns": columns, "constraints": constraints}
    return described


def figures_seed() -> dict[str, Any]:
    """Tickets with messages as they were before the message figures (tickets 0014), and the figures
    they should get: {ticket id: [messages, notes, failed, last message's body or None]}."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    apps = MigrationExecutor(connection).loader.project_state([("tickets", "0014_ticket_tenant_statistics")]).apps
    Tenant = apps.get_model("keybuzz", "Tenant")
    Ticket = apps.get_model("tickets", "Ticket")
    TicketMessage = apps.get_model("tickets", "TicketMessage")
    tenant = Tenant.objects.create(slug="figures", name="Figures")
    expected: dict[str, Any] = {}
    for n in range(4):
        ticket = Ticket.objects.create(tenant=tenant, thread_key=f"figures-{n}", subject=f"Ticket {n}")
        for k in range(n):  # buyer messages, the newest first in id order: the preview goes by time
            TicketMessage.objects.create(
                tenant=tenant, ticket=ticket, direction="INBOUND", body=f"Message {k} " + "x" * 200,
                sent_at=SEEDED_AT - timedelta(hours=k),
            )  # fmt: skip
        if n == 3:
            TicketMessage.objects.create(tenant=tenant, ticket=ticket, direction="NOTE", body="Note", sent_at=SEEDED_AT)
            TicketMessage.objects.create(
                tenant=tenant, ticket=ticket, direction="OUTBOUND", body="Lost", delivery_status="FAILED",
                sent_at=SEEDED_AT - timedelta(hours=9),
            )  # fmt: skip
        last = ("Message 0 " + "x" * 200)[:160] if n else None
        expected[str(ticket.pk)] = [n + (n == 3), int(n == 3), int(n == 3), last]
    return expected


def figures() -> dict[str, Any]:
    from tickets.models import Ticket

    rows = Ticket.objects.values_list("pk", "message_count", "note_count", "failed_count", "preview_body")
    return {str(pk): list(values) for pk, *values in rows}


def main() -> None:
    _setup()
    step = sys.argv[1]
    steps = {"seed": seed, "links": links, "schema": schema, "figures_seed": figures_seed, "figures": figures}
    result = steps[step]()
    json.dump(result, sys.stdout, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
