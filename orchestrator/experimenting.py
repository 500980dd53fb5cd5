"""The orchestrator's side of issue 14 (experiments and token management), kept out of services.py so
that its call sites there stay one line each (marked ``# experiments:``).

* ``plan_variant`` / ``plan_assign``: a new plan's variant (another template, another agent in place of
  the experiment's agent), recorded in the experiments app with the plan's id;
* ``plan_outcomes``: how the experiments app reads ended plans (registered in OrchestratorConfig.ready());
* ``tokens_left``: what a plan's token budget has left, for AgentCall.tokens_left (agents/tokens.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import DatabaseError

from experiments import api as experiments
from orchestrator.models import Plan
from orchestrator.planning import StepSpec
from orchestrator.states import PLAN_TERMINAL

log = logging.getLogger("orchestrator")


def plan_variant(*, owner: User, template: str) -> experiments.Choice | None:
    """The variant a new plan gets, if a running experiment covers it (reads only)."""
    return experiments.plan_variant(owner_id=owner.pk, template=template)


def plan_assign(choice: experiments.Choice | None, *, plan: Plan,
                specs: list[StepSpec] | None) -> list[StepSpec] | None:
    """In the plan's creating transaction: record its variant, and put the variant's agent in place of the
    experiment's agent in its steps. (An LLM-planned plan's steps come later: only prompt and model
    variants, applied at each call, change those.)"""
    if choice is None:
        return specs
    experiments.assignment_record(plan_id=plan.id, owner_id=plan.owner_id, choice=choice)
    if specs is None:
        return None
    return [replace(spec, agent=choice.agent_for(spec.agent)) for spec in specs]


def plan_outcomes(plan_ids: list[uuid.UUID]) -> list[experiments.PlanOutcome]:
    """The ended plans among ``plan_ids``, as the experiments app scores them. One query."""
    rows = Plan.objects.filter(id__in=plan_ids, status__in=[str(s) for s in PLAN_TERMINAL]).values(
        "id", "status", "request", "result", "tokens_used", "cost_used", "created_at", "finished_at")
    return [experiments.PlanOutcome(
        plan_id=row["id"], status=row["status"], request=row["request"], result=row["result"],
        tokens=row["tokens_used"], cost=row["cost_used"] or Decimal(0),
        latency=(row["finished_at"] - row["created_at"]).total_seconds() if row["finished_at"] else None)
        for row in rows]


def tokens_left(plan_id: uuid.UUID) -> int | None:
    """What the plan's token limits (hard cap and budget, whichever is lower) have left, or None if it has
    none. A budget already exceeded (a person approved going past it) no longer limits; a cap does."""
    try:
        row = Plan.objects.filter(id=plan_id).values("budget_tokens", "cap_tokens", "tokens_used").first()
    except DatabaseError as exc:  # the step was claimed; its budget gate was passed: run it uncapped
        log.warning("orchestrator.tokens_left.unavailable", extra={"plan_id": str(plan_id), "error": repr(exc)})
        return None
    if row is None:
        return None
    used = row["tokens_used"]
    left = []
    if row["cap_tokens"] is not None:
        left.append(row["cap_tokens"] - used)
    if row["budget_tokens"] is not None and row["budget_tokens"] > used:
        left.append(row["budget_tokens"] - used)
    return max(0, min(left)) if left else None


__all__ = ["plan_assign", "plan_outcomes", "plan_variant", "tokens_left"]
