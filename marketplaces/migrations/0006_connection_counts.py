"""The status's message and ticket counts become columns the poller increments, counted once here
from the rows that exist (one UPDATE per table, whatever their number)."""

from django.db import migrations, models
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def _counts(apps, schema_editor):
    connection_model = apps.get_model("marketplaces", "MarketplaceConnection")
    external_message = apps.get_model("marketplaces", "ExternalMessage")
    ticket = apps.get_model("tickets", "Ticket")

    def counted(model, field):
        rows = model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=Count("pk"))
        return Coalesce(Subquery(rows.values("n"), output_field=IntegerField()), Value(0))

    connection_model.objects.update(
        message_count=counted(external_message, "connection"), ticket_count=counted(ticket, "connection_id")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("marketplaces", "0005_orders"),
        ("tickets", "0006_orders"),
    ]

    operations = [
        migrations.AddField(
            model_name="marketplaceconnection",
            name="message_count",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="marketplaceconnection",
            name="ticket_count",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(_counts, migrations.RunPython.noop),
    ]
