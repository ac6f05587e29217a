"""What the list shows of each ticket's messages (the last buyer message or reply, the counts of
messages, notes and failed replies) as columns of the ticket, kept by triggers on the messages.

The list read them from the messages for each row of each page (two LATERAL joins): 0.15 of the
page statement's 0.24 ms at 1M tickets, and the most PostgreSQL did for a list request. The
triggers recount a ticket's figures from its messages (a few rows, through ticketmsg_ticket_sent)
after every insert, delete and relevant change of one of them, whoever writes it: the poller, the
agents, the delivery worker, the admin. A recount rather than increments, so any change (a
message moved, a reply that fails, a deleted note) gives the same figures as counting afresh.

PostgreSQL: the recount first locks the tickets (FOR NO KEY UPDATE, in id order), then counts in
a second statement, which in READ COMMITTED sees every message committed before the lock was
granted: of two transactions filing messages on one ticket, the second counts the first's message
too, whatever their order. NO KEY UPDATE and not UPDATE: a message insert holds a KEY SHARE lock
on its ticket (the foreign key), which UPDATE would wait for (a deadlock between two of them).
Inserts and deletes fire once per statement (the poller files a batch of messages in one INSERT);
an update fires per row, only when a column the figures read changes (the delivery worker's
bookkeeping does not). A recount that changes nothing writes nothing. The recount reads tickets by
id and messages by ticket, through their indexes, and says so (`enable_seqscan = off` for the
function): its plans are made once per database session, and one made while the tables were nearly
empty (a new deployment, the benchmarks) chose sequential scans that every later call repeated,
over tables that had grown meanwhile (about 5 ms instead of 0.3 per recount after 20,000 messages).

The columns are added empty (0 and NULL: instant on PostgreSQL, ALTER TABLE … ADD COLUMN on
SQLite, whose copy of a table would drop its triggers); on PostgreSQL migration 0016 fills them,
on SQLite this one does. tickets_ticket's fillfactor goes to 90: a recount updates only these
unindexed columns, which PostgreSQL can then do in place (a HOT update, no new index entries) where
the page has room (a ticket with an order context is often larger than the tenth of a page kept
free)."""

from django.db import migrations, models

PREVIEW_LENGTH = 160  # characters of the last message the list shows (tickets-api.md: `last_message`)

COLUMNS = {  # name: (PostgreSQL type, SQLite type), all NULL or 0 until a message says otherwise
    "preview_direction": ("varchar(16) NULL", "varchar(16) NULL"),
    "preview_author_name": ("varchar(255) NULL", "varchar(255) NULL"),
    "preview_body": ("text NULL", "text NULL"),
    "preview_sent_at": ("timestamp with time zone NULL", "datetime NULL"),
    "message_count": ("integer NOT NULL DEFAULT 0", "integer NOT NULL DEFAULT 0"),
    "note_count": ("integer NOT NULL DEFAULT 0", "integer NOT NULL DEFAULT 0"),
    "failed_count": ("integer NOT NULL DEFAULT 0", "integer NOT NULL DEFAULT 0"),
}
# The columns the figures read: a change of another one (delivery bookkeeping, a translation) does
# not recount.
READ = ("ticket_id", "direction", "delivery_status", "sent_at", "author_name", "body")
_CHANGED = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in READ if name != "delivery_status")
CHANGED = f"{_CHANGED} OR (OLD.delivery_status = 'FAILED') IS DISTINCT FROM (NEW.delivery_status = 'FAILED')"

_LAST = (
    "FROM tickets_ticketmessage m WHERE m.ticket_id = {ticket} AND m.direction IN ('INBOUND', 'OUTBOUND')"
    " ORDER BY m.sent_at DESC, m.id DESC LIMIT 1"
)
_COUNTS = (
    "SELECT COUNT(*) FILTER (WHERE m.direction IN ('INBOUND', 'OUTBOUND')) AS messages,"
    " COUNT(*) FILTER (WHERE m.direction = 'NOTE') AS notes,"
    " COUNT(*) FILTER (WHERE m.delivery_status = 'FAILED') AS failed"
    " FROM tickets_ticketmessage m WHERE m.ticket_id = {ticket}"
)
_FIGURES = (
    "message_count, note_count, failed_count, preview_direction, preview_author_name, preview_body, preview_sent_at"
)

POSTGRESQL_FORWARD = [
    *(f"ALTER TABLE tickets_ticket ADD COLUMN {name} {types[0]}" for name, types in COLUMNS.items()),
    "ALTER TABLE tickets_ticket SET (fillfactor = 90)",
    f"""
CREATE FUNCTION tickets_ticket_figures(ticket_ids bigint[]) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off AS $$
BEGIN
  PERFORM 1 FROM tickets_ticket WHERE id = ANY(ticket_ids) ORDER BY id FOR NO KEY UPDATE;
  UPDATE tickets_ticket AS t SET ({_FIGURES}) = (f.messages, f.notes, f.failed, f.direction, f.author_name,
    f.body, f.sent_at)
  FROM (
    SELECT i.id, c.messages, c.notes, c.failed, p.direction, p.author_name, p.body, p.sent_at
    FROM unnest(ticket_ids) AS i(id)
    CROSS JOIN LATERAL ({_COUNTS.format(ticket="i.id")}) AS c
    LEFT JOIN LATERAL (SELECT m.direction, m.author_name, SUBSTR(m.body, 1, {PREVIEW_LENGTH}) AS body, m.sent_at
      {_LAST.format(ticket="i.id")}) AS p ON TRUE
  ) AS f
  WHERE t.id = f.id AND ({", ".join(f"t.{name}" for name in _FIGURES.split(", "))})
    IS DISTINCT FROM (f.messages, f.notes, f.failed, f.direction, f.author_name, f.body, f.sent_at);
END $$""",
    """
CREATE FUNCTION tickets_message_figures_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tickets_ticket_figures(ARRAY(SELECT DISTINCT ticket_id FROM new_rows));
  RETURN NULL;
END $$""",
    """
CREATE FUNCTION tickets_message_figures_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tickets_ticket_figures(ARRAY(SELECT DISTINCT ticket_id FROM old_rows));
  RETURN NULL;
END $$""",
    """
CREATE FUNCTION tickets_message_figures_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tickets_ticket_figures(ARRAY(SELECT DISTINCT unnest(ARRAY[OLD.ticket_id, NEW.ticket_id])));
  RETURN NULL;
END $$""",
    "CREATE TRIGGER ticketmessage_figures_insert AFTER INSERT ON tickets_ticketmessage"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tickets_message_figures_insert()",
    "CREATE TRIGGER ticketmessage_figures_delete AFTER DELETE ON tickets_ticketmessage"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tickets_message_figures_delete()",
    f"CREATE TRIGGER ticketmessage_figures_update AFTER UPDATE OF {', '.join(READ)} ON tickets_ticketmessage"
    f" FOR EACH ROW WHEN ({CHANGED}) EXECUTE FUNCTION tickets_message_figures_update()",
]
POSTGRESQL_BACKWARD = [
    *(
        f"DROP TRIGGER IF EXISTS ticketmessage_figures_{event} ON tickets_ticketmessage"
        for event in ("insert", "delete", "update")
    ),
    *(f"DROP FUNCTION IF EXISTS tickets_message_figures_{event}()" for event in ("insert", "delete", "update")),
    "DROP FUNCTION IF EXISTS tickets_ticket_figures(bigint[])",
    "ALTER TABLE tickets_ticket RESET (fillfactor)",
    *(f"ALTER TABLE tickets_ticket DROP COLUMN IF EXISTS {name}" for name in COLUMNS),
]


def sqlite_recount(ticket: str) -> str:
    """The UPDATE that recounts one ticket's figures on SQLite (row-level triggers; writers queue)."""
    preview = ("direction", "author_name", f"SUBSTR(m.body, 1, {PREVIEW_LENGTH})", "sent_at")
    last = [
        f"(SELECT {'m.' + column if '(' not in column else column} {_LAST.format(ticket=ticket)})" for column in preview
    ]
    counts = [
        f"(SELECT COUNT(*) FROM tickets_ticketmessage m WHERE m.ticket_id = {ticket} AND {condition})"
        for condition in (
            "m.direction IN ('INBOUND', 'OUTBOUND')",
            "m.direction = 'NOTE'",
            "m.delivery_status = 'FAILED'",
        )
    ]
    values = ", ".join(f"{name} = {value}" for name, value in zip(_FIGURES.split(", "), [*counts, *last], strict=True))
    return f"UPDATE tickets_ticket SET {values} WHERE id = {ticket};"


SQLITE_FORWARD = [
    *(f"ALTER TABLE tickets_ticket ADD COLUMN {name} {types[1]}" for name, types in COLUMNS.items()),
    "CREATE TRIGGER ticketmessage_figures_insert AFTER INSERT ON tickets_ticketmessage"
    f" BEGIN {sqlite_recount('NEW.ticket_id')} END",
    "CREATE TRIGGER ticketmessage_figures_delete AFTER DELETE ON tickets_ticketmessage"
    f" BEGIN {sqlite_recount('OLD.ticket_id')} END",
    f"CREATE TRIGGER ticketmessage_figures_update AFTER UPDATE OF {', '.join(READ)} ON tickets_ticketmessage"
    f" WHEN {CHANGED} BEGIN {sqlite_recount('OLD.ticket_id')} {sqlite_recount('NEW.ticket_id')} END",
    sqlite_recount("tickets_ticket.id"),  # every ticket, at once: a development database
]
SQLITE_BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS ticketmessage_figures_{event}" for event in ("insert", "delete", "update")),
    *(f"ALTER TABLE tickets_ticket DROP COLUMN {name}" for name in COLUMNS),
]


def _forward(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in POSTGRESQL_FORWARD if postgresql else SQLITE_FORWARD:
        schema_editor.execute(statement, params=None)


def _backward(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for statement in POSTGRESQL_BACKWARD if postgresql else SQLITE_BACKWARD:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0014_ticket_tenant_statistics"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="ticket",
                    name="preview_direction",
                    field=models.CharField(editable=False, max_length=16, null=True),
                ),
                migrations.AddField(
                    model_name="ticket",
                    name="preview_author_name",
                    field=models.CharField(editable=False, max_length=255, null=True),
                ),
                migrations.AddField(
                    model_name="ticket", name="preview_body", field=models.TextField(editable=False, null=True)
                ),
                migrations.AddField(
                    model_name="ticket", name="preview_sent_at", field=models.DateTimeField(editable=False, null=True)
                ),
                migrations.AddField(
                    model_name="ticket", name="message_count", field=models.IntegerField(default=0, editable=False)
                ),
                migrations.AddField(
                    model_name="ticket", name="note_count", field=models.IntegerField(default=0, editable=False)
                ),
                migrations.AddField(
                    model_name="ticket", name="failed_count", field=models.IntegerField(default=0, editable=False)
                ),
            ],
            database_operations=[migrations.RunPython(_forward, _backward)],
        ),
    ]
