"""Budgets, hard caps and approval gates, checked when steps become ready; running totals of spending.

A step's estimate (agents.api.agent_estimate) is checked against what its plan and its owner have spent
plus everything reserved: the estimates of steps queued or running, and of the siblings freed earlier in
the same pass. Over a budget the step waits for a person ("approve to exceed"); past a hard cap it fails
with ``budget.cap_exceeded``, and no approval can override that.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from agents.api import Estimate, Totals, agent_estimate, agent_get, budget_check
from approvals import api as approvals
from common.errors import Conflict
from orchestrator import selectors
from orchestrator.models import OrganisationBudget, Plan, Spending, Step, UserBudget
from orchestrator.planning import StepSpec
from orchestrator.services.transitions import steps_transition
from orchestrator.states import STEP_ACTIVE, StepStatus


@dataclass
class Reserved:
    """Tokens and cost promised to steps that may still spend them."""

    tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, estimate: Estimate) -> None:
        self.tokens += estimate.tokens
        self.cost += estimate.cost


def _reserved(steps: Any) -> Reserved:
    sums = steps.filter(status__in=STEP_ACTIVE).aggregate(t=Sum("estimated_tokens"), c=Sum("estimated_cost"))
    return Reserved(int(sums["t"] or 0), sums["c"] or Decimal(0))


def _totals(owner: Spending, reserved: Reserved, *, cap: bool) -> Totals:
    return Totals(tokens_used=owner.tokens_used + reserved.tokens, cost_used=owner.cost_used + reserved.cost,
                  budget_tokens=owner.cap_tokens if cap else owner.budget_tokens,
                  budget_cost=owner.cap_cost if cap else owner.budget_cost)


class _Books:
    """The spending a pass of the gate judges against: the plan's and its owner's totals plus reservations,
    growing as the pass frees steps. Locks the owner's UserBudget row (plan, then user: the order every
    writer of totals uses)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        user = UserBudget.objects.select_for_update().filter(user_id=plan.owner_id).first()
        self.user = user if user is not None and user.limited() else None
        self.limited = self.user is not None or plan.limited()
        self.plan_reserved = _reserved(Step.objects.filter(plan=plan)) if self.limited else Reserved()
        self.user_reserved = (_reserved(Step.objects.filter(plan__owner_id=plan.owner_id)) if self.user
                              else Reserved())
        self.organisation = _OrganisationBooks.of(plan)
        self.limited = self.limited or self.organisation is not None

    def verdict(self, estimate: Estimate) -> tuple[str, str]:
        """("ok" | "approve" | "cap", why) for a call of ``estimate``."""
        if not self.limited:
            return "ok", ""
        for cap in (True, False):
            check = budget_check(estimate=estimate, plan=_totals(self.plan, self.plan_reserved, cap=cap),
                                 user=_totals(self.user, self.user_reserved, cap=cap) if self.user else None,
                                 organisation=self.organisation.totals(cap=cap) if self.organisation else None)
            if not check.fits:
                what = "pass the hard cap" if cap else "exceed the budget"
                return ("cap" if cap else "approve",
                        f"its estimate ({estimate.tokens} tokens, ${estimate.cost}) would {what} on "
                        f"{', '.join(check.exceeded)}")
        return "ok", ""

    def reserve(self, estimate: Estimate) -> None:
        self.plan_reserved.add(estimate)
        self.user_reserved.add(estimate)
        if self.organisation is not None:
            self.organisation.reserved.add(estimate)


class _OrganisationBooks:
    """issue 11: an organisation's limits, judged against the sum of its plans' totals plus the reservations
    of its steps in flight. Only for an organisation with a limited budget row, which it locks (after the
    plan and the owner's row), so two gates of one organisation judge one after the other. There is no
    running total to update at each step end: a tenant's steps never queue on one shared row."""

    def __init__(self, row: OrganisationBudget) -> None:
        self.row = row
        spent = Plan.objects.filter(organisation_id=row.organisation_id).aggregate(
            t=Sum("tokens_used"), c=Sum("cost_used"))
        self.used = Reserved(int(spent["t"] or 0), spent["c"] or Decimal(0))
        self.reserved = _reserved(Step.objects.filter(plan__organisation_id=row.organisation_id))

    @classmethod
    def of(cls, plan: Plan) -> _OrganisationBooks | None:
        if plan.organisation_id is None:
            return None
        row = OrganisationBudget.objects.select_for_update().filter(organisation_id=plan.organisation_id).first()
        return cls(row) if row is not None and row.limited() else None

    def totals(self, *, cap: bool) -> Totals:
        return Totals(tokens_used=self.used.tokens + self.reserved.tokens,
                      cost_used=self.used.cost + self.reserved.cost,
                      budget_tokens=self.row.cap_tokens if cap else self.row.budget_tokens,
                      budget_cost=self.row.cap_cost if cap else self.row.budget_cost)


def gate(plan: Plan, ready: list[uuid.UUID], *,
         added: dict[uuid.UUID, Step] | None = None) -> tuple[list[uuid.UUID], bool]:
    """Under the plan lock: judge each ready step against budgets, caps and approval policies, counting the
    steps freed before it in this pass. A step past a hard cap fails; one that policy gates, or that would
    exceed a budget, waits with a pending approval. Returns the steps free to run, and whether any failed.

    ``added``: steps this transaction has just inserted (pending), by id: those are judged as they are, not
    read back (a plan's roots at its creation)."""
    free: list[uuid.UUID] = []
    refused = False
    books: _Books | None = None
    policies = approvals.policies(organisation_id=plan.organisation_id)
    known = [added[step_id] for step_id in ready if step_id in added] if added else []
    pending = sorted(known, key=lambda step: step.key) if len(known) == len(ready) else selectors.steps_pending(ready)
    for step in pending:
        # Its dependencies' outputs matter to an LLM's estimate and to a person deciding; load them only then.
        context = selectors.step_context(step) if agent_get(step.agent).kind == "llm" else None
        estimate = agent_estimate(step.agent, step.input, context or {})
        budget_reason = ""
        if estimate.tokens or estimate.cost:
            Step.objects.filter(id=step.id).update(estimated_tokens=estimate.tokens, estimated_cost=estimate.cost)
            books = books or _Books(plan)
            verdict, budget_reason = books.verdict(estimate)
            if verdict == "cap":
                steps_transition(step_ids=[step.id], sources=[StepStatus.PENDING], to=StepStatus.FAILED,
                                 fields={"finished_at": timezone.now(), "error_code": "budget.cap_exceeded",
                                         "error_message": budget_reason}, event_data={"code": "budget.cap_exceeded"})
                refused = True
                continue
        requirement = approvals.requirement_for(_facts(plan.template, step, estimate.cost, budget_reason),
                                                among=policies)
        if requirement is None:
            free.append(step.id)
            if books is not None:
                books.reserve(estimate)
            continue
        if steps_transition(step_ids=[step.id], sources=[StepStatus.PENDING], to=StepStatus.WAITING,
                            event_data={"reason": requirement.reason}):
            approvals.approval_request(plan_id=plan.id, step_id=step.id, step_key=step.key, agent=step.agent,
                                       plan_request=plan.request, owner=plan.owner, step_input=step.input,
                                       context=selectors.step_context(step) if context is None else context,
                                       requirement=requirement, organisation_id=plan.organisation_id)
    return free, refused


def gate_passes(steps: list[Step], *, organisation_id: int | None, template: str) -> bool:
    """Would ``gate`` free every one of these steps (of a plan of that organisation and template) without a
    decision that must see the whole plan? True when every estimate is zero (agents that use no LLM: none
    reserves budget or meets a cap) and no approval policy stops any of them. Such steps may be queued under
    the plan's shared lock (``scheduling``)."""
    if any(estimate.tokens or estimate.cost for estimate in (agent_estimate(s.agent, s.input) for s in steps)):
        return False
    policies = approvals.policies(organisation_id=organisation_id)
    return all(approvals.requirement_for(_facts(template, step, Decimal(0), ""), among=policies) is None
               for step in steps)


def _facts(template: str, step: Step, cost: Decimal, budget_reason: str) -> approvals.StepFacts:
    """What the approval policies judge a ready step of a plan made from ``template`` by."""
    return approvals.StepFacts(agent=step.agent, template=template, step_key=step.key, risk=step.risk,
                               estimated_cost=cost, requested=step.approval_requested, budget_reason=budget_reason)


class CapExceeded(Conflict):
    code = "budget.cap_exceeded"


def cap_check(plan: Plan, specs: list[StepSpec]) -> None:
    """Under the plan lock, before steps are added to a running plan (a spawn, an edit; issue 10): would
    their estimates together (without their dependencies' outputs, which do not exist yet: a lower bound),
    plus what the plan and its owner have spent and reserved, pass a hard cap? Raises CapExceeded. Over a
    budget (not a cap) they are added, and each waits for approval to exceed it when it becomes ready."""
    estimates = [agent_estimate(spec.agent, spec.input, {}) for spec in specs]
    total = Estimate(sum(e.tokens for e in estimates), sum((e.cost for e in estimates), Decimal(0)))
    if not total.tokens and not total.cost:
        return
    books = _Books(plan)
    if not books.limited:
        return
    check = budget_check(estimate=total, plan=_totals(plan, books.plan_reserved, cap=True),
                         user=_totals(books.user, books.user_reserved, cap=True) if books.user else None)
    if not check.fits:
        raise CapExceeded(f"the {len(specs)} new steps' estimate ({total.tokens} tokens, ${total.cost}) would "
                          f"pass the hard cap on {', '.join(check.exceeded)}")


def totals_add(plan: Plan, *, tokens: int, cost: Decimal | str) -> None:
    """Add a call's tokens and cost to its plan's and its owner's running totals. The caller holds the
    plan lock (and the locked instance stays current for budget checks in the same transaction); the
    user's row is created on demand by an upsert, so concurrent plans cannot race it."""
    if not tokens and not Decimal(cost):
        return
    plan_id, owner_id = plan.id, plan.owner_id
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Plan._meta.db_table} SET tokens_used = tokens_used + %s, "
                       "cost_used = cost_used + %s::numeric WHERE id = %s", [tokens, str(cost), plan_id])
        table = UserBudget._meta.db_table
        cursor.execute(f"INSERT INTO {table} (user_id, tokens_used, cost_used) VALUES (%s, %s, %s::numeric) "
                       f"ON CONFLICT (user_id) DO UPDATE SET tokens_used = {table}.tokens_used + EXCLUDED.tokens_used, "
                       f"cost_used = {table}.cost_used + EXCLUDED.cost_used", [owner_id, tokens, str(cost)])
    plan.tokens_used += tokens
    plan.cost_used += Decimal(cost)
