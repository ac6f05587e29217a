from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tickets", "0002_drop_channel_foreign_keys")]

    operations = [
        migrations.AddField(
            model_name="ticketmessage",
            name="delivery_worker",
            field=models.CharField(blank=True, max_length=128),
        ),
    ]
