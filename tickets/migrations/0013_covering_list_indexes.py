"""The list's walking indexes hold the columns its filters read (PostgreSQL: INCLUDE).

A page's ids are read by one prepared statement whose plan PostgreSQL makes once for every tenant,
from the table's average tenant (tickets.rows.where_tenant). When most tenants are small, that plan
was a bitmap scan of the tenant's tickets and a sort, which a tenant of 20,000 tickets paid in full
on every page. With every column of the WHERE in the index, walking it in the page's order reads
index entries only (an index-only scan), and PostgreSQL prefers it for small and large tenants
alike: the overdue page's ids at 100k tickets went from a 5 ms bitmap scan and sort to 0.2 ms.

On PostgreSQL each index is built CONCURRENTLY under a new name, then swapped for the old one:
ticket writes go on meanwhile (a plain CREATE INDEX held them for the 7 s this took at a million
tickets). So this migration is not atomic; run again after a failure, it starts over cleanly.
"""

from django.db import migrations, models

# The list's NULLS order, which Django cannot say in an index (migrations 0007 and 0012).
LAST_MESSAGE = '"tenant_id", "last_message_at" DESC NULLS LAST, "id" DESC'
# The same condition as tickets.rows.UNANSWERED_SQL, so the planner matches it.
UNANSWERED = (
    "\"status\" IN ('OPEN', 'PENDING') AND \"last_inbound_at\" IS NOT NULL"
    ' AND ("last_reply_at" IS NULL OR "last_reply_at" < "last_inbound_at")'
)
COLUMNS = ["status", "channel", "assignee", "connection_id", "last_inbound_at", "last_reply_at", "response_due_at"]
INCLUDE = ", ".join(f'"{name}_id"' if name == "assignee" else f'"{name}"' for name in COLUMNS)
INCLUDE_BUT_DUE = INCLUDE.replace(', "response_due_at"', "")

# name → (columns, INCLUDE, WHERE), after and before this migration (PostgreSQL).
AFTER = {
    "ticket_tenant_last_msg": (LAST_MESSAGE, INCLUDE, ""),
    "ticket_unanswered_last_msg": (LAST_MESSAGE, INCLUDE, UNANSWERED),
    "ticket_tenant_due": ('"tenant_id", "response_due_at", "id"', INCLUDE_BUT_DUE, ""),
}
BEFORE = {
    "ticket_tenant_last_msg": (LAST_MESSAGE, "", ""),
    "ticket_unanswered_last_msg": (LAST_MESSAGE, "", UNANSWERED),
    "ticket_tenant_due": ('"tenant_id", "response_due_at"', "", ""),
}


def _unanswered_q() -> models.Q:
    return models.Q(status__in=["OPEN", "PENDING"], last_inbound_at__isnull=False) & (
        models.Q(last_reply_at__isnull=True) | models.Q(last_reply_at__lt=models.F("last_inbound_at"))
    )


def _indexes(*, after: bool) -> list[models.Index]:
    """The three indexes as the model's state says them (SQLite builds these: no NULLS LAST, no INCLUDE)."""
    include = COLUMNS if after else []
    return [
        models.Index(fields=["tenant", "-last_message_at", "-id"], include=include, name="ticket_tenant_last_msg"),
        models.Index(
            fields=["tenant", "-last_message_at", "-id"],
            condition=_unanswered_q(),
            include=include,
            name="ticket_unanswered_last_msg",
        ),
        models.Index(
            fields=["tenant", "response_due_at", "id"] if after else ["tenant", "response_due_at"],
            include=[name for name in include if name != "response_due_at"],
            name="ticket_tenant_due",
        ),
    ]


def _swap(*, after: bool):
    def swap(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            model = apps.get_model("tickets", "Ticket")
            for old, new in zip(_indexes(after=not after), _indexes(after=after), strict=True):
                schema_editor.remove_index(model, old)
                schema_editor.add_index(model, new)
            return
        for name, (columns, include, where) in (AFTER if after else BEFORE).items():
            building = f"{name}_building"
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{building}"')  # a failed run's, invalid
            schema_editor.execute(
                f'CREATE INDEX CONCURRENTLY "{building}" ON "tickets_ticket" ({columns})'
                + (f" INCLUDE ({include})" if include else "")
                + (f" WHERE {where}" if where else "")
            )
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            schema_editor.execute(f'ALTER INDEX "{building}" RENAME TO "{name}"')

    return swap


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("tickets", "0012_unanswered_list_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                operation
                for old, new in zip(_indexes(after=False), _indexes(after=True), strict=True)
                for operation in (
                    migrations.RemoveIndex(model_name="ticket", name=old.name),
                    migrations.AddIndex(model_name="ticket", index=new),
                )
            ],
            database_operations=[migrations.RunPython(_swap(after=True), _swap(after=False))],
        ),
    ]
