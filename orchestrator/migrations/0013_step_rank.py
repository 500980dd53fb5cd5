"""Step.rank, the scheduler's hint of which freed step a worker runs itself (services/scheduling.py). An integer
with a constant default and no CHECK: Postgres adds it without rewriting or scanning the step table. The default
stays in the database, so processes of the previous release, which do not write it, keep inserting steps while a
deploy rolls. Steps stored before it are rank 1: the statement's order decides among them, as it did."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orchestrator', '0012_step_queued_by_agent'),
    ]

    operations = [
        migrations.AddField(
            model_name='step',
            name='rank',
            field=models.IntegerField(db_default=1, default=1),
        ),
    ]
