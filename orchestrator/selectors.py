"""Reads of plans and steps, always scoped to who may see them."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet

from common.errors import DomainError, NotFound
from orchestrator.models import Plan, PlanEvent, Step
from organisations.api import tenancy_of


class PlanForbidden(DomainError):
    code = "plan.forbidden"
    http_status = 403


def _reads_whole_organisation(user: User) -> bool:
    tenancy = tenancy_of(user)
    return (tenancy.shared_plans or tenancy.is_admin
            or (user.is_staff and user.has_perm("orchestrator.view_plan")))


def plans_visible(*, user: User) -> QuerySet[Plan]:
    """The plans of the user's organisation that they may read (docs/organisations.md): their own; every
    plan of the organisation if it shares plans between members, or if they are its admin or staff with
    orchestrator.view_plan. Superusers see every plan of every organisation. Another organisation's plan is
    never in it, so its lookups are 404s."""
    plans = Plan.objects.select_related("owner")
    if user.is_superuser:
        return plans
    plans = plans.filter(organisation_id=tenancy_of(user).organisation_id)
    return plans if _reads_whole_organisation(user) else plans.filter(owner=user)


def plan_get(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """Raises NotFound (also for a plan the user may not see: its existence is not revealed)."""
    try:
        return plans_visible(user=user).get(id=plan_id)
    except (Plan.DoesNotExist, ValueError):
        raise NotFound(f"no plan {plan_id}") from None


def plan_get_for_change(*, user: User, plan_id: uuid.UUID | str) -> Plan:
    """A plan the user may cancel or retry: their own, or any plan of their organisation if they are its
    admin (or staff with orchestrator.change_plan, or a superuser). Raises NotFound for a plan they cannot
    see, PlanForbidden (403 ``plan.forbidden``) for one they may only read."""
    plan = plan_get(user=user, plan_id=plan_id)
    if (plan.owner_id == user.pk or user.is_superuser or tenancy_of(user).is_admin
            or (user.is_staff and user.has_perm("orchestrator.change_plan"))):
        return plan
    raise PlanForbidden("only the plan's owner or an admin of its organisation may change it")


def plan_ids_of_organisation(*, organisation_id: int) -> QuerySet[Plan, uuid.UUID]:
    """The ids of an organisation's plans, as a subquery (the audit trail's scope)."""
    return Plan.objects.filter(organisation_id=organisation_id).values_list("id", flat=True)


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
