# The cache of AI translations of ticket messages (tickets.assist.message_translate).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keybuzz', '0001_initial'),  # Tenant; nothing of keybuzz 0002 is needed
        ('tickets', '0008_reply_times'),
    ]

    operations = [
        migrations.CreateModel(
            name='MessageTranslation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('language', models.CharField(max_length=8)),
                ('text', models.TextField()),
                ('model', models.CharField(blank=True, max_length=128)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('message', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='translations', to='tickets.ticketmessage')),
                ('tenant', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='keybuzz.tenant')),
            ],
            options={
                'indexes': [models.Index(fields=['tenant'], name='translation_tenant')],
                'constraints': [models.UniqueConstraint(fields=('message', 'language'), name='translation_unique_message_language')],
            },
        ),
    ]
