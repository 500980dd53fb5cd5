"""Celery tasks: thin adapters with stable names and JSON arguments (ids only).

Delivery is at-least-once (acks_late, reject_on_worker_lost); ``services.step_claim`` makes every
delivery after the first a no-op, and the reconciler covers messages that never arrive.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from celery import shared_task
from django.db import connection

from agents.api import AgentCall, AgentError, agent_run
from agents.errors import TransientAgentError
from agents.streaming import ChunkBuffer
from orchestrator import experimenting, services
from orchestrator.queues import Queue

log = logging.getLogger("orchestrator")


def _worker_name(hostname: str | None) -> str:
    return f"{hostname or 'local'}/{os.getpid()}/{threading.current_thread().name}"


@shared_task(name="orchestrator.run_step", queue=Queue.AGENTS, bind=True, acks_late=True,
             reject_on_worker_lost=True)
def run_step(self, step_id: str, attempt: int) -> None:  # type: ignore[no-untyped-def]
    """Claim the step for this attempt, call its agent with no connection held, record the outcome."""
    claimed = services.step_claim(step_id=uuid.UUID(step_id), attempt=attempt,
                                  worker=_worker_name(self.request.hostname))
    if claimed is None:
        return
    tokens_left = experimenting.tokens_left(claimed.plan_id)  # experiments: max_tokens follows the budget
    # Give the pooled connection back while the agent waits on the network (maybe for minutes).
    connection.close()

    def record_output(text: str) -> None:
        services.step_output_chunk(step_id=claimed.id, attempt=attempt, text=text)
        connection.close()

    output = ChunkBuffer(record_output)  # streamed text -> a few step.output events a second
    call = AgentCall(plan_id=str(claimed.plan_id), step_id=str(claimed.id), step_key=claimed.key,
                     attempt=attempt, input=claimed.input, context=claimed.context, timeout=claimed.timeout,
                     on_chunk=output.add, tokens_left=tokens_left)

    def on_retry(try_number: int, exc: TransientAgentError, delay: float) -> None:
        services.step_retrying(step_id=claimed.id, attempt=attempt, code=exc.code, message=exc.message,
                               delay=delay)
        connection.close()

    try:
        result = agent_run(name=claimed.agent, call=call, on_retry=on_retry)
        output.close()
    except AgentError as exc:
        services.step_fail(step_id=claimed.id, attempt=attempt, code=exc.code, message=exc.message)
        return
    except Exception as exc:  # the agent boundary: a crash in agent code fails the step, visibly
        log.exception("orchestrator.step.agent_crashed", extra={"step_id": step_id, "attempt": attempt})
        services.step_fail(step_id=claimed.id, attempt=attempt, code="agent.crashed",
                           message=f"{type(exc).__name__}: {exc}")
        return
    usage = result.usage.as_dict() if result.usage is not None else {}
    if result.agent != claimed.agent:
        usage["agent"] = result.agent  # its fallback answered
    try:
        services.step_succeed(step_id=claimed.id, attempt=attempt, output=result.output, usage=usage or None)
    except TypeError as exc:
        services.step_fail(step_id=claimed.id, attempt=attempt, code="agent.bad_output",
                           message=f"the agent's output is not JSON: {exc}")
    finally:
        connection.close()


@shared_task(name="orchestrator.plan_generate", queue=Queue.AGENTS, acks_late=True)
def plan_generate(plan_id: str) -> None:
    services.plan_generate(plan_id=uuid.UUID(plan_id))
    connection.close()


@shared_task(name="orchestrator.reconcile", queue=Queue.SCHEDULER, ignore_result=True)
def reconcile() -> dict[str, int]:
    return services.reconcile()
