"""Tell PostgreSQL's planner that a tenant holds a hundredth of the tickets, whatever ANALYZE finds.

The list's statement is prepared with the tenant hidden from the planner (tickets.rows.where_tenant),
so PostgreSQL keeps one generic plan, costed for the *average* tenant: with thousands of small
tenants, two or three tickets. For so few rows, every index that leads with the tenant looks about as
cheap as the one in the list's order, and the choice turns on the indexes' sizes: once every ticket
had been updated once (as the poller and the agents do all day), the plan read the inbox through
`ticket_tenant_status_last` and sorted, 5,026 ticket rows for a page of a 5,000-ticket tenant instead
of 26 (tests/tickets/test_fast_paths.py). With 100 tenants assumed, each holding 1% of the table
(exactly the benchmark's 100 tenants, whose plans do not change), reading the list's index in order
and stopping after a page is the plan by far once the table holds a few thousand tickets, for a
tenant of one ticket as of 200,000. Fewer assumed tenants (20) made the search's walk for the largest
tenant three times slower at 1M tickets (15 against 5 ms); a fraction of the rows (-0.01) assumed
100 tickets a tenant at any size, too few for the search's walk of 208, which then read and sorted
the largest tenant's 200,000 (50 ms).

`n_distinct` is ANALYZE's own override for a column whose distinct count it gets wrong; ANALYZE
applies it, hence the ANALYZE here. SQLite has nothing to say."""

from django.db import migrations

FORWARD = [
    "ALTER TABLE tickets_ticket ALTER COLUMN tenant_id SET (n_distinct = 100)",
    "ANALYZE tickets_ticket",
]
BACKWARD = [
    "ALTER TABLE tickets_ticket ALTER COLUMN tenant_id RESET (n_distinct)",
    "ANALYZE tickets_ticket",
]


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement, params=None)


def _backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0013_covering_list_indexes"),
    ]

    operations = [migrations.RunPython(_forward, _backward)]
