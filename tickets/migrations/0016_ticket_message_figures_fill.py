"""Fills the message figures of migration 0015 for the tickets that existed before it on PostgreSQL
(0015 fills them itself on SQLite, a development database), 5,000 tickets per transaction: the
triggers keep every ticket touched meanwhile right, and a batch holds its tickets' locks for about a
second, so the poller and the agents go on while it runs (257 s for 1M tickets on the benchmark's
2-core machine; each ticket gets a new row version, in every index: see docs/operations.md).
Stopped half-way, it can simply be run again."""

import sys

from django.db import migrations, transaction

BATCH = 5000


def _fill(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    done, last = 0, 0
    with connection.cursor() as cursor:
        while True:
            with transaction.atomic(using=connection.alias):
                cursor.execute(
                    "SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM tickets_ticket WHERE id > %s ORDER BY id"
                    " LIMIT %s) AS batch",
                    [last, BATCH],
                )
                ids = cursor.fetchone()[0]
                if not ids:
                    break
                cursor.execute("SELECT tickets_ticket_figures(%s)", [ids])
            done, last = done + len(ids), ids[-1]
            if done % 100_000 < BATCH and done >= 100_000:
                sys.stdout.write(f"\n  message figures: {done:,} tickets")
                sys.stdout.flush()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0015_ticket_message_figures"),
    ]

    operations = [migrations.RunPython(_fill, migrations.RunPython.noop)]
