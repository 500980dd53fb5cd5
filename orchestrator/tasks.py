"""Celery tasks: thin adapters with stable names and JSON arguments (ids only), each calling one service.

Delivery is at-least-once (acks_late, reject_on_worker_lost): a claim makes every delivery after the first a
no-op, and the reconciler covers messages that never arrive. No task result is stored or read.
"""

from __future__ import annotations

import os
import threading
import uuid

from celery import shared_task

from common.queues import Queue
from orchestrator import services
from orchestrator.metrics import record_repairs as metrics_record_repairs


def _worker_name(hostname: str | None) -> str:
    return f"{hostname or 'local'}/{os.getpid()}/{threading.current_thread().name}"


@shared_task(name="orchestrator.run_step", queue=Queue.AGENTS, bind=True, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def run_step(self, step_id: str, attempt: int) -> None:  # type: ignore[no-untyped-def]
    # The queue it came from (its routing key: each queue is bound by its own name), which this worker
    # consumes: the thread may go on with that queue's oldest queued steps (services.step_run).
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    services.step_run(step_id=uuid.UUID(step_id), attempt=attempt, worker=_worker_name(self.request.hostname),
                      queue=queue)


@shared_task(name="orchestrator.plan_generate", queue=Queue.AGENTS, bind=True, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True)
def plan_generate(self, plan_id: str, attempt: int = 1) -> None:  # type: ignore[no-untyped-def]
    services.plan_generate(plan_id=uuid.UUID(plan_id), attempt=attempt, worker=_worker_name(self.request.hostname))


@shared_task(name="orchestrator.plan_remember", queue=Queue.AGENTS, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def plan_remember(plan_id: str) -> None:
    """A plan that ended: its episodes written and its scratchpad dropped (idempotent)."""
    services.plan_remember(plan_id=uuid.UUID(plan_id))


@shared_task(name="orchestrator.step_remember", queue=Queue.AGENTS, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def step_remember(step_id: str, plan_ended: bool) -> None:
    """Sent by releases before 12-02 (a step's memory was written by its own task then); such a message still
    in the queue at an upgrade archives the plan if the step ended it, which now writes that step's episode."""
    if plan_ended:
        services.plan_remember(step_id=uuid.UUID(step_id))


# send_events=False keeps the reconciler (every few seconds) out of Flower's tasks view; its
# repairs are counted for /metrics instead.
@shared_task(name="orchestrator.reconcile", queue=Queue.SCHEDULER, ignore_result=True, send_events=False)
def reconcile() -> dict[str, int]:
    counts = services.reconcile()
    metrics_record_repairs(counts)
    return counts
