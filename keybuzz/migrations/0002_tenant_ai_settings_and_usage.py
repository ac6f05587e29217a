# Tenants' settings for AI help (reply tone, signature, on/off) and the daily count of AI calls.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keybuzz', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='tenant',
            name='ai_enabled',
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.AddField(
            model_name='tenant',
            name='reply_tone',
            field=models.CharField(choices=[('neutral', 'Neutral'), ('friendly', 'Friendly'), ('formal', 'Formal')], db_default='neutral', default='neutral', max_length=16),
        ),
        migrations.AddField(
            model_name='tenant',
            name='signature',
            field=models.TextField(blank=True, db_default='', default='', max_length=500),
        ),
        migrations.CreateModel(
            name='AiUsage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('calls', models.PositiveIntegerField(default=0)),
                ('tenant', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='keybuzz.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'day'), name='aiusage_unique_tenant_day')],
            },
        ),
    ]
