# Logging out ends the session: its access tokens are refused too (keybuzz.models.LoggedOutSession).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keybuzz', '0002_tenant_ai_settings_and_usage'),
    ]

    operations = [
        migrations.CreateModel(
            name='LoggedOutSession',
            fields=[
                ('session_id', models.UUIDField(primary_key=True, serialize=False)),
                ('logged_out_at', models.DateTimeField(db_index=True)),
            ],
        ),
    ]
