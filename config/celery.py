"""The Celery app. Queues (see orchestrator.queues.Queue): ``agents`` for I/O-bound agent calls on a
threads pool, ``scheduler`` for the periodic reconciler; they never share a pool."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- issue 15: say in the worker's startup log which provider and model each llm agent uses ------------
from celery.signals import worker_ready  # noqa: E402


@worker_ready.connect
def _log_llm_providers(**_: object) -> None:
    from agents.api import llm_log_choices

    llm_log_choices()
