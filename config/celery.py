"""The Celery app. Queues (see common.queues.Queue): ``agents`` for I/O-bound agent calls on a
threads pool, ``scheduler`` for the periodic reconciler, ``notify`` for
outbound notifications; they never share a pool.

Every worker and beat process logs JSON lines through Django's LOGGING (``setup_logging`` below, so Celery
installs no handler of its own), with the task's plan, step and attempt bound to each line, and sets up
tracing when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (config.telemetry).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from config import (
    kombu_fixes,  # noqa: F401  (a Redis transport bug that kills workers: see the module)
    telemetry,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _check_configuration(**kwargs: object) -> None:
    from config.startup import exit_on_configuration_errors

    exit_on_configuration_errors()


@signals.worker_ready.connect
def _log_llm_providers(**_: object) -> None:
    """The worker's startup log says which provider and model each llm agent uses."""
    from agents.api import llm_log_choices

    llm_log_choices()


@signals.worker_ready.connect  # the worker's own process: the threads pool runs tasks in it
@signals.worker_process_init.connect  # prefork children
@signals.beat_init.connect
def _freeze_loaded(**_: object) -> None:
    from config.startup import freeze_loaded

    freeze_loaded()


@signals.setup_logging.connect
def _logging(loglevel: str | int | None = None, **_: Any) -> None:
    import logging
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:  # the command line's --loglevel still decides how much Celery itself says
        logging.getLogger("celery").setLevel(loglevel)


@signals.worker_init.connect
def _worker_tracing(**_: Any) -> None:
    telemetry.setup("orchestrator-worker")


@signals.worker_process_init.connect  # prefork children (the threads pool has none)
def _worker_child_tracing(**_: Any) -> None:
    telemetry.setup("orchestrator-worker")


@signals.beat_init.connect
def _beat_tracing(**_: Any) -> None:
    telemetry.setup("orchestrator-beat")


@signals.worker_shutdown.connect
def _flush_spans(**_: Any) -> None:
    telemetry.shutdown()


_TOKENS: dict[str, Any] = {}


@signals.task_prerun.connect
def _bind_log_ids(task_id: str, task: Any, args: tuple[Any, ...] = (), **_: Any) -> None:
    from common.logging import bind

    ids: dict[str, Any] = {"task": task.name, "task_id": task_id,
                           "plan_id": getattr(task.request, "plan_id", None)}
    if task.name == "orchestrator.run_step" and len(args) == 2:
        ids.update(step_id=args[0], attempt=args[1])
    elif task.name == "orchestrator.plan_generate" and args:
        ids["plan_id"] = args[0]
    _TOKENS[task_id] = bind(**ids)


@signals.task_postrun.connect
def _unbind_log_ids(task_id: str, **_: Any) -> None:
    from common.logging import unbind

    token = _TOKENS.pop(task_id, None)
    if token is not None:
        try:
            unbind(token)
        except ValueError:  # bound in another context (never with the threads pool): nothing to undo
            pass
