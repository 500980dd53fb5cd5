"""Budgets are enforced: a step that would exceed one waits for "approve to exceed"; a hard cap refuses it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from approvals import api as approvals
from approvals.models import Approval
from orchestrator import services
from orchestrator.models import Plan, Step, UserBudget
from orchestrator.states import PlanStatus, StepStatus
from tests.approvals.test_approvals import make_approver
from tests.conftest import api_client, wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

TWO_CALLS = [{"key": "first", "agent": "gpt", "input": {"prompt": "one"}},
             {"key": "second", "agent": "gpt", "input": {"prompt": "two"}, "depends_on": ["first"]}]


def first_estimate() -> Decimal:
    """Budgets are set to exactly the first call's estimate: it fits, and the second (whose estimate is no
    smaller, on top of what the first really cost) cannot."""
    from agents.api import agent_estimate

    return agent_estimate("gpt", TWO_CALLS[0]["input"], {}).cost


def wait_for_step(plan: Any, key: str, status: str) -> Step:
    import time

    deadline = time.monotonic() + 30
    while (step := Step.objects.get(plan=plan, key=key)).status != status:
        assert time.monotonic() < deadline, f"{key} still {step.status}"
        time.sleep(0.05)
    return step


def test_a_step_over_the_plan_budget_waits_and_runs_once_approved(user: Any, django_user_model: Any) -> None:
    api = api_client(user)
    budget = first_estimate()
    response = api.post("/api/plans/", {"request": "on a budget", "steps": TWO_CALLS,
                                        "budget_cost": str(budget)}, format="json")
    assert response.status_code == 201, response.json()
    plan = Plan.objects.get(id=response.json()["id"])

    second = wait_for_step(plan, "second", StepStatus.WAITING)
    approval = Approval.objects.get(step_id=second.id)
    assert approval.policy == "budget" and "plan.cost" in approval.reason
    assert Step.objects.get(id=second.id).estimated_cost > 0

    approvals.approval_decide(approval_id=approval.id, user=make_approver(django_user_model, "cfo"),
                              decision="approve", comment="worth it")
    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED
    steps = Step.objects.filter(plan=plan)
    assert plan.cost_used == sum(s.cost for s in steps)
    assert plan.cost_used + Step.objects.get(id=second.id).estimated_cost > budget  # approved to exceed


def test_a_hard_cap_refuses_the_step_that_would_pass_it(user: Any) -> None:
    cap = first_estimate()
    plan = services.plan_create(owner=user, request="capped", steps=TWO_CALLS, cap_cost=cap)

    plan = wait_for_plan(plan.id)

    second = Step.objects.get(plan=plan, key="second")
    assert (second.status, second.error_code) == (StepStatus.FAILED, "budget.cap_exceeded")
    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "budget.cap_exceeded")
    assert plan.cost_used <= cap
    assert not Approval.objects.filter(plan_id=plan.id).exists()  # no approval can override a cap


def test_a_users_budget_gates_across_their_plans(user: Any) -> None:
    UserBudget.objects.create(user=user, budget_tokens=1)

    plan = services.plan_create(owner=user, request="personal budget", steps=TWO_CALLS[:1])

    first = wait_for_step(plan, "first", StepStatus.WAITING)
    assert "user.tokens" in Approval.objects.get(step_id=first.id).reason


def test_an_organisations_budget_counts_every_members_plans(user: Any, django_user_model: Any) -> None:
    from orchestrator.models import OrganisationBudget
    from organisations import services as organisations

    team = organisations.organisation_create(name="Team", slug="team-budget")
    colleague = django_user_model.objects.create_user(username="colleague", password="pw-for-tests")
    for person in (user, colleague):
        organisations.member_set(user=person, organisation=team)
    spent = wait_for_plan(services.plan_create(owner=user, request="first member", steps=TWO_CALLS[:1]).id)
    assert spent.status == PlanStatus.SUCCEEDED and spent.tokens_used > 0
    OrganisationBudget.objects.create(organisation=team, budget_tokens=spent.tokens_used)  # all used up

    plan = services.plan_create(owner=colleague, request="second member", steps=TWO_CALLS[:1])

    first = wait_for_step(plan, "first", StepStatus.WAITING)  # another member's plan spent the budget
    assert "organisation.tokens" in Approval.objects.get(step_id=first.id).reason
    elsewhere = services.plan_create(owner=django_user_model.objects.create_user(username="outsider"),
                                     request="another organisation", steps=TWO_CALLS[:1])
    assert wait_for_plan(elsewhere.id).status == PlanStatus.SUCCEEDED  # its budget is not theirs


def test_an_organisations_hard_cap_refuses_the_step(user: Any) -> None:
    from orchestrator.models import OrganisationBudget
    from organisations import services as organisations

    team = organisations.organisation_create(name="Capped", slug="team-cap")
    organisations.member_set(user=user, organisation=team)
    OrganisationBudget.objects.create(organisation=team, cap_tokens=1)

    plan = wait_for_plan(services.plan_create(owner=user, request="capped team", steps=TWO_CALLS[:1]).id)

    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "budget.cap_exceeded")
    assert "organisation.tokens" in Step.objects.get(plan=plan, key="first").error_message
