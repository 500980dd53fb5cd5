"""``step_open`` (does a plan have a step left open?) also asks for a plan in its predicate, so that only a statement
that names one can read it. A worker's pull names none, and the planner read this index whole for it (every open
step of every plan, per pull) whenever the statistics made it look cheaper than the pull's own index: after a vacuum
between two big plans, a plan of 5,000 steps ran in 43 s instead of 15. Dropped and built again CONCURRENTLY (the
step table is the busiest; while it is missing, whether a plan is settled is read through the plan's keys)."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('orchestrator', '0017_in_flight_indexes'),
    ]

    operations = [
        RemoveIndexConcurrently(model_name='step', name='step_open'),
        AddIndexConcurrently(
            model_name='step',
            index=models.Index(condition=models.Q(models.Q(('status__in', ['succeeded', 'failed', 'rejected',
                                                                           'cancelled']), _negated=True),
                                                  ('plan__isnull', False)),
                               fields=['plan'], name='step_open'),
        ),
    ]
