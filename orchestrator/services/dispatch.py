"""Handing steps and planner runs to the broker. The database decides what runs; a message only says
"go and claim (id, attempt)". A send that fails is marked on the step (``unsent``) and the reconciler sends
it again at its next run; a message the broker loses is found by the reconciler too (services/reconcile.py).

Sends never wait on a result backend (there is none: no task result is ever read) and fail fast while the
broker is down (no publish retries): a request that queued steps answers at once during a Redis outage.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from itertools import chain, repeat

from celery import Signature, current_app
from django.db import DatabaseError, transaction
from kombu.exceptions import BatchPublishError  # type: ignore[attr-defined]  # kombu 5.7; its stubs predate it
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from agents.api import agent_get
from orchestrator.models import Plan, Step
from orchestrator.services.transitions import Moved

log = logging.getLogger("orchestrator")

RUN_STEP_TASK = "orchestrator.run_step"
PLAN_GENERATE_TASK = "orchestrator.plan_generate"
# BatchPublishError: a batch's pipeline failed, so which of its messages Redis took is unknown; all are marked
# unsent and sent again (a duplicate message is a no-op: only the delivery that claims the step's attempt runs).
SEND_ERRORS = (BrokerError, BatchPublishError, RedisError, OSError)


def _send(send: Callable[[], object], *, what: str, mark_unsent: Callable[[], object]) -> bool:
    try:
        send()
        return True
    except SEND_ERRORS as exc:
        log.warning("orchestrator.dispatch.failed", extra={"what": what, "error": repr(exc)})
    try:
        mark_unsent()
    except DatabaseError as exc:  # the age-based requeue still finds it
        log.warning("orchestrator.dispatch.mark_failed", extra={"what": what, "error": repr(exc)})
    return False


# The sizes of a group's batches: a wide group goes out in a few growing batches, not one, because building a
# message costs more CPU than sending it (~0.3 ms against a round trip's ~0.1 ms): in a single batch of 200
# the first step would wait ~70 ms for the other 199 to be built. The last size repeats.
BATCH_SIZES = (4, 16, 64, 256)


def _batches(signatures: list[Signature]) -> Iterator[list[Signature]]:
    start = 0
    for size in chain(BATCH_SIZES, repeat(BATCH_SIZES[-1])):
        if start >= len(signatures):
            return
        yield signatures[start:start + size]
        start += size


def _publish(signatures: list[Signature]) -> None:
    """Publish the messages in a few Redis round trips (kombu's producer batch: one pipeline each, sent at its
    exit), the first batch small so that the first steps start while the rest are built."""
    with current_app.producer_or_acquire() as producer:
        for batch in _batches(signatures):
            with producer.batch() if len(batch) > 1 else nullcontext():  # one message: no pipeline to build
                for signature in batch:
                    signature.apply_async(producer=producer)


# Celery declares a message's queue at every publish (kombu binds and copies the queue and its exchange each
# time to look it up in its cache: a third of a send's CPU). On Redis a message to a queue is a push onto the
# list of that name (Celery publishes to the default exchange with the queue as the routing key), which needs
# no binding; each worker declares the queues it consumes.
NO_DECLARE: list[object] = []


def send_steps(moved: list[Moved]) -> bool:
    """Publish one run_step message per step, in a few round trips (``_publish``). False if the broker could
    not take them all: they are then all marked ``unsent`` for the reconciler (a message that did go out is a
    no-op claim when its step is sent again)."""
    if not moved:
        return True
    signatures = [
        # argsrepr names the plan and step in Flower; the plan_id header binds the worker's log lines to it.
        current_app.signature(RUN_STEP_TASK, args=(str(step.id), step.attempt), queue=agent_get(step.agent).queue,
                              ignore_result=True, retry=False, headers={"plan_id": str(step.plan_id)},
                              argsrepr=f"plan={step.plan_id} step={step.key} ({step.id}) attempt={step.attempt}",
                              declare=NO_DECLARE)
        for step in moved
    ]
    sent = _send(
        lambda: _publish(signatures),
        what=f"{len(moved)} step(s) of plan {moved[0].plan_id}",
        mark_unsent=lambda: Step.objects.filter(id__in=[s.id for s in moved]).update(unsent=True),
    )
    if sent:
        log.debug("orchestrator.steps.dispatched", extra={"plan_id": str(moved[0].plan_id), "count": len(moved)})
    return sent


def dispatch_on_commit(moved: list[Moved]) -> None:
    """Send the steps' messages once the transaction that queued them commits (never from inside it)."""
    if moved:
        transaction.on_commit(lambda: send_steps(moved))


def send_planner(plan_id: uuid.UUID, attempt: int) -> bool:
    return _send(
        lambda: current_app.send_task(PLAN_GENERATE_TASK, args=(str(plan_id), attempt), ignore_result=True,
                                      retry=False),
        what=f"planner of plan {plan_id}",
        mark_unsent=lambda: Plan.objects.filter(id=plan_id).update(planning_unsent=True),
    )


def planner_on_commit(plan_id: uuid.UUID, attempt: int) -> None:
    transaction.on_commit(lambda: send_planner(plan_id, attempt))
