"""Reads of plans and steps, always scoped to who may see them."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from common.errors import NotFound
from orchestrator.models import Plan, PlanEvent, Step


def plans_visible(*, user: User) -> QuerySet[Plan]:
    """A user's own plans; staff with orchestrator.view_plan see every plan."""
    plans = Plan.objects.select_related("owner")
    if user.is_staff and user.has_perm("orchestrator.view_plan"):
        return plans
    return plans.filter(owner=user)


def plan_get(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """Raises NotFound (also for a plan the user may not see: its existence is not revealed)."""
    try:
        return plans_visible(user=user).get(id=plan_id)
    except (Plan.DoesNotExist, ValueError):
        raise NotFound(f"no plan {plan_id}") from None


def plan_steps(*, plan: Plan) -> QuerySet[Step]:
    return plan.steps.order_by("queued_at", "key")


def plan_events_after(*, plan_id: uuid.UUID, after_id: int = 0) -> list[PlanEvent]:
    return list(PlanEvent.objects.filter(plan_id=plan_id, id__gt=after_id).order_by("id"))


def step_context(step: Step) -> dict[str, Any]:
    """The outputs of the step's dependencies, by key: what its agent receives as context. Succeeded
    outputs never change, so this read needs no lock or transaction."""
    if not step.depends_on:
        return {}
    return dict(Step.objects.filter(plan_id=step.plan_id, key__in=step.depends_on).values_list("key", "output"))


def outputs_of(*, plan_id: uuid.UUID, keys: list[str]) -> dict[str, Any]:
    """The outputs of the named steps of a plan, by key."""
    if not keys:
        return {}
    return dict(Step.objects.filter(plan_id=plan_id, key__in=keys).values_list("key", "output"))
