"""The pull's index: each agent's queued steps in queue order (services/transitions.py, ``oldest_of``).

Built CONCURRENTLY: the steps table takes writes from every worker while a deployment migrates."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("orchestrator", "0011_plan_organisation_fill"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="step",
            index=models.Index(condition=models.Q(("status", "queued")), fields=["agent", "queued_at"],
                               name="step_queued_by_agent"),
        ),
    ]
