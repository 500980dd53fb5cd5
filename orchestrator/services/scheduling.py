"""Deciding what runs next, under the plan's lock: cancel what can never run, gate and queue what is
ready, finish a settled plan. Readiness itself is defined once, in services/readiness.py."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from orchestrator.models import Plan, Step
from orchestrator.services import readiness
from orchestrator.services.budgets import gate
from orchestrator.services.dispatch import dispatch_on_commit
from orchestrator.services.transitions import plan_locked, plan_transition, steps_transition
from orchestrator.states import PlanStatus, StepStatus


def advance(plan: Plan, *, after_success_of: str | None = None) -> None:
    """Under the plan lock: cancel steps that can never run, start (or gate) the ready ones, and finish a
    settled plan. ``after_success_of``: the step that just succeeded, when that is all that changed (then
    only its dependents can have become ready, and nothing can have become doomed)."""
    if after_success_of is None:
        doomed = readiness.steps_doomed(plan_id=plan.id)
        steps_transition(step_ids=doomed, sources=[StepStatus.PENDING], to=StepStatus.CANCELLED,
                         fields={"finished_at": timezone.now(), "error_code": "step.upstream_failed",
                                 "error_message": "a step it depends on did not succeed"})
    ready = readiness.steps_ready(plan_id=plan.id, dependents_of=after_success_of)
    if ready:
        free, refused = gate(plan, ready)
        dispatch_on_commit(steps_transition(step_ids=free, sources=[StepStatus.PENDING], to=StepStatus.QUEUED,
                                            fields={"queued_at": timezone.now(), "requeues": 0},
                                            increment=("attempt",)))
        if refused:  # a step failed at its gate: its dependents are doomed, the plan may be settled
            advance(plan)
    elif readiness.plan_settled(plan_id=plan.id):
        finish(plan)


def finish(plan: Plan) -> None:
    """End a settled plan: failed with its first failed step's code, or succeeded with its sinks' outputs."""
    failed = (Step.objects.filter(plan=plan, status__in=[StepStatus.FAILED, StepStatus.REJECTED])
              .order_by("finished_at").values("key", "error_code", "error_message").first())
    if failed:
        message = f"step {failed['key']!r} failed: {failed['error_message']}"
        plan_transition(plan, PlanStatus.FAILED, error_code=failed["error_code"], error_message=message,
                        data={"step": failed["key"], "code": failed["error_code"]})
        return
    keys_and_deps = list(Step.objects.filter(plan=plan).values_list("key", "depends_on"))
    dependencies = set().union(*(deps for _, deps in keys_and_deps))
    sinks = [key for key, _ in keys_and_deps if key not in dependencies]
    outputs = dict(Step.objects.filter(plan=plan, key__in=sinks).values_list("key", "output"))
    result = outputs[sinks[0]] if len(sinks) == 1 else outputs
    plan_transition(plan, PlanStatus.SUCCEEDED, result=result)


def plan_advance(*, plan_id: uuid.UUID) -> None:
    """Queue whatever is ready and finish the plan if it is settled. Idempotent; takes the plan lock."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status == PlanStatus.RUNNING:
            advance(plan)
