"""The reconciler's two indexes hold only the steps in flight: stale queued steps (``queued_at`` of queued steps)
and expired leases (``lease_expires_at`` of running steps), instead of ``(status, queued_at)`` and ``(status,
lease_expires_at)`` over every step that ever ran. A step's success then writes no entry into either (its row
matches neither condition), and both stay as small as the work in flight. Built and dropped CONCURRENTLY: the step
table is the busiest one, and a plain CREATE INDEX would block every step's writes while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('orchestrator', '0016_pull_resumes'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='step',
            index=models.Index(condition=models.Q(('status', 'queued')), fields=['queued_at'], name='step_queued_since'),
        ),
        AddIndexConcurrently(
            model_name='step',
            index=models.Index(condition=models.Q(('status', 'running')), fields=['lease_expires_at'],
                               name='step_running_lease'),
        ),
        RemoveIndexConcurrently(model_name='step', name='step_status_queued'),
        RemoveIndexConcurrently(model_name='step', name='step_status_lease'),
    ]
