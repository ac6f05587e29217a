"""Drops the foreign keys that databases made before 2026-12 still have from tickets into
marketplaces (tickets_ticket.connection_id and tickets_ticketmessage.external_message_id); the
columns, their values and the unique constraints stay. A database made by 0001 has none: nothing
to do. Nothing to undo either: the links are opaque ids now, and stay valid without the keys."""

from django.db import migrations

COLUMNS = {"Ticket": "connection_id", "TicketMessage": "external_message_id"}


def _foreign_keys(schema_editor, table: str, column: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [name for name, c in constraints.items() if c["foreign_key"] and c["columns"] == [column]]


def drop_channel_foreign_keys(apps, schema_editor) -> None:
    for model_name, column in COLUMNS.items():
        model = apps.get_model("tickets", model_name)
        table = model._meta.db_table
        names = _foreign_keys(schema_editor, table, column)
        if not names:
            continue
        if schema_editor.connection.vendor == "sqlite":
            # SQLite cannot drop a constraint: the table is rebuilt from the model, which has none.
            schema_editor._remake_table(model)
        else:
            for name in names:
                schema_editor.execute(
                    f"ALTER TABLE {schema_editor.quote_name(table)} DROP CONSTRAINT {schema_editor.quote_name(name)}"
                )


class Migration(migrations.Migration):
    dependencies = [("tickets", "0001_layered")]

    operations = [migrations.RunPython(drop_channel_foreign_keys, migrations.RunPython.noop, elidable=False)]
