"""The list's walking indexes hold the columns its filters read (PostgreSQL: INCLUDE).

A page's ids are read by one prepared statement whose plan PostgreSQL makes once for every tenant,
from the table's average tenant (tickets.rows.where_tenant). When most tenants are small, that plan
was a bitmap scan of the tenant's tickets and a sort, which a tenant of 20,000 tickets paid in full
on every page. With every column of the WHERE in the index, walking it in the page's order reads
index entries only (an index-only scan), and PostgreSQL prefers it for small and large tenants
alike: the overdue page's ids at 100k tickets went from a 5 ms bitmap scan and sort to 0.2 ms.
Built without CONCURRENTLY (migrations run in a transaction): each index reads the tickets table
once, a few seconds at a million tickets, during which ticket writes wait."""

from django.db import migrations, models

INCLUDED = '"status", "channel", "assignee_id", "connection_id", "last_inbound_at", "last_reply_at", "response_due_at"'
# The same condition as tickets.rows.UNANSWERED_SQL, so the planner matches it.
UNANSWERED = (
    "\"status\" IN ('OPEN', 'PENDING') AND \"last_inbound_at\" IS NOT NULL"
    ' AND ("last_reply_at" IS NULL OR "last_reply_at" < "last_inbound_at")'
)
ORDER = '"tenant_id", "last_message_at" DESC NULLS LAST, "id" DESC'
COLUMNS = ["status", "channel", "assignee", "connection_id", "last_inbound_at", "last_reply_at", "response_due_at"]


def _unanswered_q() -> models.Q:
    return models.Q(status__in=["OPEN", "PENDING"], last_inbound_at__isnull=False) & (
        models.Q(last_reply_at__isnull=True) | models.Q(last_reply_at__lt=models.F("last_inbound_at"))
    )


def _rebuild(*, include: bool):
    def rebuild(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return  # SQLite has neither NULLS LAST nor INCLUDE in an index: the plain ones stay
        covering = f" INCLUDE ({INCLUDED})" if include else ""
        for name, where in (("ticket_tenant_last_msg", ""), ("ticket_unanswered_last_msg", f" WHERE {UNANSWERED}")):
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
            schema_editor.execute(f'CREATE INDEX "{name}" ON "tickets_ticket" ({ORDER}){covering}{where}')

    return rebuild


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0012_unanswered_list_index"),
    ]

    operations = [
        # Rolled back, this runs last: the indexes as 0012 left them, after the state's own reversal.
        migrations.RunPython(migrations.RunPython.noop, _rebuild(include=False)),
        # The model's state (include=); on PostgreSQL the indexes are then built by _rebuild, in the
        # list's NULLS order, as 0007 and 0012 built them.
        migrations.RemoveIndex(model_name="ticket", name="ticket_tenant_last_msg"),
        migrations.AddIndex(
            model_name="ticket",
            index=models.Index(fields=["tenant", "-last_message_at", "-id"], include=COLUMNS, name="ticket_tenant_last_msg"),
        ),
        migrations.RemoveIndex(model_name="ticket", name="ticket_unanswered_last_msg"),
        migrations.AddIndex(
            model_name="ticket",
            index=models.Index(
                fields=["tenant", "-last_message_at", "-id"],
                condition=_unanswered_q(),
                include=COLUMNS,
                name="ticket_unanswered_last_msg",
            ),
        ),
        # Most urgent first: ASC NULLS LAST is PostgreSQL's default, so Django builds this one as it is.
        migrations.RemoveIndex(model_name="ticket", name="ticket_tenant_due"),
        migrations.AddIndex(
            model_name="ticket",
            index=models.Index(
                fields=["tenant", "response_due_at", "id"],
                include=[name for name in COLUMNS if name != "response_due_at"],
                name="ticket_tenant_due",
            ),
        ),
        migrations.RunPython(_rebuild(include=True), migrations.RunPython.noop),
    ]
