"""Per-tenant ticket counts by status, kept by triggers (tickets.models.TicketStatusCount), counted
once here from the tickets; and a partial index on the backlog by assignee. Together they make the
inbox figures constant in the tenant's history (474 ms -> a few ms for a 200,000-ticket tenant)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count

COUNTS = "tickets_ticketstatuscount"

# PostgreSQL: one trigger call per statement, with the statement's rows as transition tables, adds
# each (tenant, status)'s net change. The poller files a batch of tickets in one INSERT … ON CONFLICT
# DO UPDATE (new tickets fire the INSERT trigger, reopened ones the UPDATE trigger); a row-level
# trigger would cost one upsert per ticket. ORDER BY: concurrent statements lock the counter rows in
# the same order (no deadlock between two of them). A delete only decrements (never inserts): a
# tenant's deletion may delete its counter rows before its tickets.
POSTGRESQL_FORWARD = [
    f"""
CREATE FUNCTION tickets_status_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {COUNTS} (tenant_id, status, count)
  SELECT tenant_id, status, count(*) FROM new_rows GROUP BY tenant_id, status ORDER BY tenant_id, status
  ON CONFLICT (tenant_id, status) DO UPDATE SET count = {COUNTS}.count + EXCLUDED.count;
  RETURN NULL;
END $$""",
    f"""
CREATE FUNCTION tickets_status_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {COUNTS} (tenant_id, status, count)
  SELECT tenant_id, status, sum(n) FROM (
    SELECT tenant_id, status, 1 AS n FROM new_rows UNION ALL SELECT tenant_id, status, -1 FROM old_rows
  ) AS moved GROUP BY tenant_id, status HAVING sum(n) <> 0 ORDER BY tenant_id, status
  ON CONFLICT (tenant_id, status) DO UPDATE SET count = {COUNTS}.count + EXCLUDED.count;
  RETURN NULL;
END $$""",
    f"""
CREATE FUNCTION tickets_status_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE {COUNTS} AS c SET count = c.count - gone.n
  FROM (SELECT tenant_id, status, count(*) AS n FROM old_rows GROUP BY tenant_id, status) AS gone
  WHERE c.tenant_id = gone.tenant_id AND c.status = gone.status;
  RETURN NULL;
END $$""",
    "CREATE TRIGGER ticket_status_count_insert AFTER INSERT ON tickets_ticket"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tickets_status_count_insert()",
    "CREATE TRIGGER ticket_status_count_update AFTER UPDATE ON tickets_ticket"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION tickets_status_count_update()",
    "CREATE TRIGGER ticket_status_count_delete AFTER DELETE ON tickets_ticket"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tickets_status_count_delete()",
]
POSTGRESQL_BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS ticket_status_count_{event} ON tickets_ticket" for event in ("insert", "update", "delete")),
    *(f"DROP FUNCTION IF EXISTS tickets_status_count_{event}()" for event in ("insert", "update", "delete")),
]

# SQLite (development and the tests): row-level triggers, the same arithmetic.
_UPSERT = (
    f"INSERT INTO {COUNTS} (tenant_id, status, count) VALUES (NEW.tenant_id, NEW.status, 1)"
    f" ON CONFLICT (tenant_id, status) DO UPDATE SET count = count + 1;"
)
_DECREMENT = f"UPDATE {COUNTS} SET count = count - 1 WHERE tenant_id = OLD.tenant_id AND status = OLD.status;"
SQLITE_FORWARD = [
    f"CREATE TRIGGER ticket_status_count_insert AFTER INSERT ON tickets_ticket BEGIN {_UPSERT} END",
    "CREATE TRIGGER ticket_status_count_update AFTER UPDATE OF status, tenant_id ON tickets_ticket"
    " WHEN OLD.status IS NOT NEW.status OR OLD.tenant_id IS NOT NEW.tenant_id"
    f" BEGIN {_DECREMENT} {_UPSERT} END",
    f"CREATE TRIGGER ticket_status_count_delete AFTER DELETE ON tickets_ticket BEGIN {_DECREMENT} END",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS ticket_status_count_{event}" for event in ("insert", "update", "delete")
]


def _triggers(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in POSTGRESQL_FORWARD if postgresql else SQLITE_FORWARD:
        schema_editor.execute(statement, params=None)


def _drop_triggers(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in POSTGRESQL_BACKWARD if postgresql else SQLITE_BACKWARD:
        schema_editor.execute(statement, params=None)


def _backfill(apps, schema_editor):
    # After the triggers, in the same transaction: on PostgreSQL creating them locked the table
    # against writes until the commit, so no ticket is counted twice or missed.
    ticket = apps.get_model("tickets", "Ticket")
    counts = apps.get_model("tickets", "TicketStatusCount")
    counts.objects.all().delete()
    counts.objects.bulk_create(
        counts(tenant_id=row["tenant_id"], status=row["status"], count=row["n"])
        for row in ticket.objects.order_by().values("tenant_id", "status").annotate(n=Count("id"))
    )


class Migration(migrations.Migration):

    dependencies = [
        ('keybuzz', '0001_initial'),
        ('tickets', '0009_message_translations'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TicketStatusCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('OPEN', 'Open'), ('PENDING', 'Pending'), ('RESOLVED', 'Resolved'), ('CLOSED', 'Closed')], max_length=16)),
                ('count', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name='ticket',
            index=models.Index(condition=models.Q(('status__in', ['OPEN', 'PENDING'])), fields=['tenant', 'assignee'], name='ticket_active_assignee'),
        ),
        migrations.AddField(
            model_name='ticketstatuscount',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='keybuzz.tenant'),
        ),
        migrations.AddConstraint(
            model_name='ticketstatuscount',
            constraint=models.UniqueConstraint(fields=('tenant', 'status'), name='ticketstatuscount_unique_tenant_status'),
        ),
        migrations.RunPython(_triggers, _drop_triggers),
        migrations.RunPython(_backfill, migrations.RunPython.noop),
    ]
