"""Through a real worker: LLM steps record tokens and cost, plans and users keep running totals, and
streamed text reaches the plan's events as batched ``step.output`` events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orchestrator import services
from orchestrator.models import PlanEvent, Step, UserBudget
from tests.agents.fakes import ANSWER, AgentFakes
from tests.conftest import wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

PRICES = {"fake-gpt": (Decimal("2.5"), Decimal(10)), "fake-claude": (Decimal(3), Decimal(15))}


def price(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    prompt, completion = PRICES[model]
    return ((prompt * prompt_tokens + completion * completion_tokens) / 10**6).quantize(Decimal("0.000001"))


def test_tokens_and_cost_totals_equal_the_sum_of_the_calls(user: Any, agent_fakes: AgentFakes) -> None:
    before = len(agent_fakes.usage_of("fake-gpt")), len(agent_fakes.usage_of("fake-claude"))
    steps: list[dict[str, Any]] = [
        {"key": "a", "agent": "gpt", "input": {"prompt": "first question key:costs-a"}},
        {"key": "b", "agent": "claude", "input": {"prompt": "second question key:costs-b"}},
        {"key": "c", "agent": "gpt", "input": {"prompt": "third, with context key:costs-c"}, "depends_on": ["a", "b"]},
        {"key": "d", "agent": "echo", "depends_on": ["c"]},
    ]

    plan = wait_for_plan(services.plan_create(owner=user, request="costs", steps=steps).id)

    assert plan.status == "succeeded"
    answered = agent_fakes.usage_of("fake-gpt")[before[0]:] + agent_fakes.usage_of("fake-claude")[before[1]:]
    assert len(answered) == 3
    tokens = sum(p + c for _, p, c in answered)
    cost = sum((price(m, p, c) for m, p, c in answered), Decimal(0))
    by_key = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert sum(s.prompt_tokens + s.completion_tokens for s in by_key.values()) == tokens
    assert sum(s.cost for s in by_key.values()) == cost > 0
    assert by_key["d"].cost == 0 and by_key["d"].prompt_tokens == 0
    assert (plan.tokens_used, plan.cost_used) == (tokens, cost)
    budget = UserBudget.objects.get(user=user)
    assert (budget.tokens_used, budget.cost_used) == (tokens, cost)


def test_user_totals_add_up_across_plans(user: Any) -> None:
    one = wait_for_plan(services.plan_create(owner=user, request="one", steps=[
        {"key": "a", "agent": "gpt", "input": {"prompt": "plan one key:totals-1"}}]).id)
    two = wait_for_plan(services.plan_create(owner=user, request="two", steps=[
        {"key": "a", "agent": "claude", "input": {"prompt": "plan two key:totals-2"}}]).id)

    budget = UserBudget.objects.get(user=user)
    assert budget.tokens_used == one.tokens_used + two.tokens_used > 0
    assert budget.cost_used == one.cost_used + two.cost_used > 0


def test_streamed_text_is_recorded_as_batched_step_output_events(user: Any) -> None:
    plan = wait_for_plan(services.plan_create(owner=user, request="stream", steps=[
        {"key": "a", "agent": "gpt", "input": {"prompt": "stream it key:stream-1"}}]).id)

    events = list(PlanEvent.objects.filter(plan=plan, type="step.output").order_by("id"))
    assert events, "the streamed answer should show in the plan's events"
    assert "".join(e.data["text"] for e in events) == ANSWER
    assert len(events) <= len(ANSWER.split())
    assert all(e.step_key == "a" and e.data["attempt"] == 1 for e in events)
