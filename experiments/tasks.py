"""Celery tasks: thin adapters with stable names and JSON arguments."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from common.queues import Queue
from experiments import services


@shared_task(name="experiments.evaluate", queue=Queue.SCHEDULER, ignore_result=True)
def evaluate() -> dict[str, int]:
    """Score ended plans, send them to the judge, apply the stop rules (beat: EXPERIMENTS_EVALUATE_EVERY).
    Idempotent: a score is written once (conditional update)."""
    try:
        return services.experiments_evaluate()
    finally:
        connection.close()


@shared_task(name="experiments.judge", queue=Queue.AGENTS, acks_late=True, ignore_result=True)
def judge(assignment_id: int) -> None:
    """The judge's LLM call, on the agents queue (I/O-bound). A duplicate delivery finds the plan judged."""
    try:
        services.assignment_judge(assignment_id=assignment_id)
    finally:
        connection.close()
