"""The last buyer message's and the last live reply's times become columns of the ticket, kept by
the writes; computed once here from the messages (one UPDATE)."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def _backfill(apps, schema_editor):
    ticket = apps.get_model("tickets", "Ticket")
    message = apps.get_model("tickets", "TicketMessage")
    of_ticket = message.objects.filter(ticket=OuterRef("pk")).order_by("-sent_at")
    ticket.objects.update(
        last_inbound_at=Subquery(of_ticket.filter(direction="INBOUND").values("sent_at")[:1]),
        last_reply_at=Subquery(
            of_ticket.filter(direction="OUTBOUND").exclude(delivery_status="FAILED").values("sent_at")[:1]
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0007_list_and_search_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="ticket",
            name="last_inbound_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="ticket",
            name="last_reply_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(_backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="ticket",
            index=models.Index(
                condition=models.Q(
                    ("last_inbound_at__isnull", False),
                    ("status__in", ["OPEN", "PENDING"]),
                    models.Q(
                        ("last_reply_at__isnull", True),
                        ("last_reply_at__lt", models.F("last_inbound_at")),
                        _connector="OR",
                    ),
                ),
                fields=["tenant", "response_due_at"],
                name="ticket_unanswered_due",
            ),
        ),
    ]
