"""The inbox list's indexes in its exact order, and trigram indexes for its search (PostgreSQL)."""

import logging

from django.db import migrations, models, transaction

logger = logging.getLogger("django.db.migrations")

# Trigram indexes (pg_trgm) for the inbox search: `icontains` is UPPER(column) LIKE UPPER('%word%'),
# which a GIN index on UPPER(column) with gin_trgm_ops serves for words of 3 characters or more.
TRIGRAM_INDEXES = {
    "ticketmsg_body_trgm": ("tickets_ticketmessage", "body"),
    "ticket_subject_trgm": ("tickets_ticket", "subject"),
    "ticket_customer_name_trgm": ("tickets_ticket", "customer_name"),
    "ticket_customer_ref_trgm": ("tickets_ticket", "customer_ref"),
    "ticket_order_id_trgm": ("tickets_ticket", "order_id"),
}


# The inbox orders by last_message_at DESC NULLS LAST; a DESC index is NULLS FIRST unless told.
LIST_INDEXES = {
    "ticket_tenant_last_msg": '"tenant_id", "last_message_at" DESC NULLS LAST, "id" DESC',
    "ticket_tenant_status_last": '"tenant_id", "status", "last_message_at" DESC NULLS LAST, "id" DESC',
}


def _list_indexes_nulls_last(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite cannot say NULLS LAST in an index; it keeps the plain ones
    for name, columns in LIST_INDEXES.items():
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
        schema_editor.execute(f'CREATE INDEX "{name}" ON "tickets_ticket" ({columns})')


def _list_indexes_nulls_first(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, columns in LIST_INDEXES.items():
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
        schema_editor.execute(
            f'CREATE INDEX "{name}" ON "tickets_ticket" ({columns.replace(" NULLS LAST", "")})'
        )


def _trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite: the search scans, as it always did
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # the database user may not create extensions: search works, unindexed
        logger.warning(
            "pg_trgm could not be enabled (%s): the inbox search works, unindexed. To index it, run "
            "'CREATE EXTENSION pg_trgm;' as a database administrator, then "
            "'manage.py migrate tickets 0006 && manage.py migrate tickets'.",
            exc,
        )
        return
    for name, (table, column) in TRIGRAM_INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def _drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):

    dependencies = [
        ("tickets", "0006_orders"),
    ]

    operations = [
        # The status index gains the id (the list's tie-break); state only on SQLite, and on PostgreSQL
        # rebuilt below in the list's NULLS order.
        migrations.RemoveIndex(model_name="ticket", name="ticket_tenant_status_last"),
        migrations.AddIndex(
            model_name="ticket",
            index=models.Index(
                fields=["tenant", "status", "-last_message_at", "-id"], name="ticket_tenant_status_last"
            ),
        ),
        migrations.RunPython(_list_indexes_nulls_last, _list_indexes_nulls_first),
        migrations.RunPython(_trigram_indexes, _drop_trigram_indexes),
    ]
