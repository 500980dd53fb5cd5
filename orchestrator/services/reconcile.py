"""The reconciler: repairs what lost messages and lost workers leave behind. Runs every
ORCH_RECONCILE_EVERY seconds (beat), anywhere, any number of times at once: every repair is a conditional
write under the plan's lock, so a repair that lost a race is a no-op.

* Queued steps whose message never reached the broker (``unsent``), or is older than ORCH_REQUEUE_AFTER, or
  that the broker lost (its data is gone: a restart without persistence) are sent again at their current
  attempt; after ORCH_MAX_REQUEUES sends a step fails with ``step.undeliverable`` (no worker consumes its
  queue).
* Running steps whose lease expired lost their worker (the heartbeat stopped): a new attempt, or failed
  after ``max_attempts`` with ``step.worker_lost`` (or ``step.deadline_exceeded`` if the run was past its
  deadline: it hung).
* Running plans with nothing queued, running or waiting are advanced (a lost "step ended" follow-up).
* Plans being planned: their planner is sent again, or given a new attempt when its lease expired.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.models import Plan, Step
from orchestrator.services.dispatch import dispatch_on_commit, planner_on_commit
from orchestrator.services.scheduling import advance, plan_advance
from orchestrator.services.transitions import plan_locked, plan_transition, steps_transition
from orchestrator.states import STEP_ACTIVE, PlanStatus, StepStatus

log = logging.getLogger("orchestrator")

BROKER_MARK = "orchestrator:broker-mark"
BATCH = 1000


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)


def broker_lost_messages() -> bool:
    """Did the broker lose its data since the last look? A mark kept in the broker itself is gone after a
    restart without persistence (or a flush): then every queued message may be gone too. Also true on the
    first look ever (a harmless extra send: claims are idempotent)."""
    try:
        return bool(_redis().set(BROKER_MARK, timezone.now().isoformat(), nx=True))
    except RedisError:
        return False  # nothing can be sent now anyway; the next run looks again


def reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Run every repair once; return how many of each were made."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.ORCH_REQUEUE_AFTER)
    counts = {"requeued": 0, "undeliverable": 0, "lease_expired": 0, "advanced": 0, "replanned": 0}
    everything = broker_lost_messages()

    queued = Step.objects.filter(status=StepStatus.QUEUED)
    if not everything:
        queued = queued.filter(Q(unsent=True) | Q(queued_at__lt=stale_before))
    by_plan: dict[uuid.UUID, list[tuple[uuid.UUID, int, int]]] = defaultdict(list)
    for plan_id, step_id, attempt, requeues in queued.values_list("plan_id", "id", "attempt", "requeues")[:BATCH]:
        by_plan[plan_id].append((step_id, attempt, requeues))
    reason = "broker_lost" if everything else "message_lost"
    for plan_id, steps in by_plan.items():
        requeued, failed = _requeue(plan_id, steps, now=now, reason=reason)
        counts["requeued"] += requeued
        counts["undeliverable"] += failed

    expired = Step.objects.filter(status=StepStatus.RUNNING, lease_expires_at__lt=now)
    for row in expired.values_list("id", "plan_id", "attempt", "max_attempts", "deadline_at",
                                   "lease_expires_at")[:BATCH]:
        counts["lease_expired"] += _step_lost(*row, now=now)

    active = Step.objects.filter(plan=OuterRef("pk"), status__in=[*STEP_ACTIVE, StepStatus.WAITING])
    for plan_id in (Plan.objects.filter(status=PlanStatus.RUNNING).exclude(Exists(active))
                    .values_list("id", flat=True)[:BATCH]):
        plan_advance(plan_id=plan_id)
        counts["advanced"] += 1

    planning = Plan.objects.filter(status=PlanStatus.PLANNING)
    if not everything:
        planning = planning.filter(Q(planning_unsent=True) | Q(planning_queued_at__lt=stale_before)
                                   | Q(planning_lease_expires_at__lt=now))
    for plan_id in planning.values_list("id", flat=True)[:BATCH]:
        counts["replanned"] += _replan(plan_id, now=now)

    if any(counts.values()):
        log.warning("orchestrator.reconcile.repaired", extra=counts)
    return counts


def _requeue(plan_id: uuid.UUID, steps: Iterable[tuple[uuid.UUID, int, int]], *, now: datetime,
             reason: str) -> tuple[int, int]:
    """Send the plan's queued steps again at their current attempts (under the plan lock: lock order plan,
    then steps), or fail those sent too often. A step claimed meanwhile is no longer queued: untouched."""
    resend = [(step_id, attempt) for step_id, attempt, requeues in steps if requeues < settings.ORCH_MAX_REQUEUES]
    give_up = [(step_id, attempt) for step_id, attempt, requeues in steps if requeues >= settings.ORCH_MAX_REQUEUES]
    with transaction.atomic():
        plan = plan_locked(plan_id)
        moved = steps_transition(step_ids=[s for s, _ in resend], attempt=[a for _, a in resend],
                                 sources=[StepStatus.QUEUED], to=StepStatus.QUEUED, increment=("requeues",),
                                 fields={"queued_at": now, "unsent": False}, event="step.requeued",
                                 event_data={"reason": reason})
        dispatch_on_commit(moved)
        failed = steps_transition(
            step_ids=[s for s, _ in give_up], attempt=[a for _, a in give_up], sources=[StepStatus.QUEUED],
            to=StepStatus.FAILED, event_data={"code": "step.undeliverable"},
            fields={"finished_at": now, "error_code": "step.undeliverable",
                    "error_message": f"no worker took its message after {settings.ORCH_MAX_REQUEUES} sends; "
                                     "is a worker consuming its queue?"})
        if failed and plan.status == PlanStatus.RUNNING:
            advance(plan)
    return len(moved), len(failed)


def _step_lost(step_id: uuid.UUID, plan_id: uuid.UUID, attempt: int, max_attempts: int,
               deadline_at: datetime | None, lease_expires_at: datetime | None, *, now: datetime) -> int:
    # Its worker was alive (its heartbeat renewed the lease) after the run's deadline: it hung; else it died.
    last_alive = lease_expires_at - timedelta(seconds=settings.ORCH_LEASE_TTL) if lease_expires_at else None
    hung = deadline_at is not None and last_alive is not None and last_alive >= deadline_at
    reason = "deadline_passed" if hung else "worker_lost"
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if attempt < max_attempts:
            moved = steps_transition(step_ids=[step_id], sources=[StepStatus.RUNNING], to=StepStatus.QUEUED,
                                     attempt=attempt, increment=("attempt",), event="step.retrying",
                                     event_data={"reason": reason},
                                     fields={"queued_at": now, "lease_expires_at": None, "requeues": 0})
            dispatch_on_commit(moved)
        else:
            code = "step.deadline_exceeded" if hung else "step.worker_lost"
            what = "ran past its deadline" if hung else "lost its worker"
            moved = steps_transition(step_ids=[step_id], sources=[StepStatus.RUNNING], to=StepStatus.FAILED,
                                     attempt=attempt, event_data={"reason": reason, "code": code},
                                     fields={"finished_at": now, "error_code": code, "lease_expires_at": None,
                                             "error_message": f"it {what} {attempt} times"})
            if moved and plan.status == PlanStatus.RUNNING:
                advance(plan)
    return len(moved)


def _replan(plan_id: uuid.UUID, *, now: datetime) -> int:
    """Send a plan's planner again (same attempt), or give it a new attempt when its lease expired."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status != PlanStatus.PLANNING:
            return 0
        lease = plan.planning_lease_expires_at
        if lease is not None and lease >= now:
            return 0  # a planner is at work and alive
        if lease is not None:  # its worker was lost
            if plan.planning_attempt >= settings.ORCH_STEP_MAX_ATTEMPTS:
                plan_transition(plan, PlanStatus.FAILED, error_code="plan.planner_lost",
                                error_message=f"the planner lost its worker {plan.planning_attempt} times",
                                data={"code": "plan.planner_lost"})
                return 1
            plan.planning_attempt += 1
            plan.planning_lease_expires_at, plan.planning_requeues = None, 0
        elif plan.planning_requeues >= settings.ORCH_MAX_REQUEUES:
            plan_transition(plan, PlanStatus.FAILED, error_code="plan.undeliverable",
                            error_message="no worker took the planner's message", data={"code": "plan.undeliverable"})
            return 1
        else:
            plan.planning_requeues += 1
        plan.planning_queued_at, plan.planning_unsent = now, False
        plan.save(update_fields=["planning_attempt", "planning_lease_expires_at", "planning_queued_at",
                                 "planning_unsent", "planning_requeues"])
        planner_on_commit(plan.id, plan.planning_attempt)
    return 1
