"""The Celery app. Queues (see common.queues.Queue): ``agents`` for I/O-bound agent calls on a
threads pool, ``scheduler`` for the periodic reconciler; they never share a pool."""

from __future__ import annotations

import os

from celery import Celery, signals

from config import kombu_fixes  # noqa: F401  (a Redis transport bug that kills workers: see the module)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _check_configuration(**kwargs: object) -> None:
    from config.startup import exit_on_configuration_errors

    exit_on_configuration_errors()
