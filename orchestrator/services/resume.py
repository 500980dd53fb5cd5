"""Retrying a failed plan, resuming a cancelled one (issue 10, item 5): the steps that did not succeed go back
to ``pending`` and run again; succeeded steps are never called again.

Under the plan lock, like every decision about what runs next. Each retried step keeps its attempt counter
(its next delivery is a new attempt, so a late result of an earlier one is stale) and gets a fresh allowance of
lost-worker retries. What the earlier attempts did stays in the event record (``step.failed`` /
``step.cancelled`` with their attempt), and a ``step.retried`` event marks each step sent back.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from common.errors import Conflict
from orchestrator.models import Plan, Step
from orchestrator.services.scheduling import advance
from orchestrator.services.transitions import plan_locked, plan_transition, steps_transition
from orchestrator.states import STEP_UNSUCCESSFUL, PlanStatus, StepStatus

_RESET = {"error_code": "", "error_message": "", "output": None, "started_at": None, "finished_at": None,
          "worker": "", "deadline_at": None, "lease_expires_at": None, "requeues": 0, "unsent": False}


def plan_retry(*, plan_id: uuid.UUID, actor: User | None = None) -> Plan:
    """Run a failed or cancelled plan again from where it stopped. Raises Conflict (``plan.not_retryable``)
    if the plan has not ended that way, or has no steps (a planner that failed: create the plan again)."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status not in (PlanStatus.FAILED, PlanStatus.CANCELLED):
            raise Conflict(f"only a failed or cancelled plan can be retried; this one is {plan.status}",
                           code="plan.not_retryable")
        retry = list(Step.objects.filter(plan=plan, status__in=STEP_UNSUCCESSFUL).values_list("id", flat=True))
        if not retry:
            raise Conflict("the plan has no step to run again", code="plan.not_retryable")
        moved = steps_transition(step_ids=retry, sources=list(STEP_UNSUCCESSFUL), to=StepStatus.PENDING,
                                 event="step.retried", fields=_RESET, actor=actor)
        Step.objects.filter(id__in=retry).update(max_attempts=F("attempt") + settings.ORCH_STEP_MAX_ATTEMPTS)
        plan_transition(plan, PlanStatus.RUNNING, actor=actor, error_code="", error_message="", result=None,
                        finished_at=None, data={"retried": sorted(step.key for step in moved)})
        advance(plan)
    return plan
