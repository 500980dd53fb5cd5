"""Drop the step table's index on ``plan_id`` alone. The (plan, key) unique constraint's index starts with the
same column and serves every read by plan. With both, Postgres chose the smaller one whenever its statistics
said plans are small (a database of many small plans, as the API's users make), and a claim's lookups of its
dependencies and dependents by key (``transitions._CONTEXT_COLUMN``, ``_LAST_OF_COLUMN``) read the plan's every
step: 10,000 rows for a claim in a plan of 5,000 steps, so a plan's cost grew with the square of its size.

Dropped CONCURRENTLY (outside a transaction), so steps keep being written while it goes."""

from django.db import migrations, models

import django.db.models.deletion


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orchestrator", "0013_step_rank"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="step",
                    name="plan",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="steps", to="orchestrator.plan"),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS orchestrator_step_plan_id_d8140534",
                    reverse_sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS orchestrator_step_plan_id_d8140534 "
                                "ON orchestrator_step (plan_id)",
                ),
            ],
        ),
    ]
