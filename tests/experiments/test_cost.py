"""The response cache, routing to a cheaper model and token management, through a real worker and the
fake OpenAI-compatible server (tests/fakes.py)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from agents import cache
from agents.api import AgentCall, agent_run
from agents.base import AgentSpec
from agents.cost_options import parse
from agents.costs import cost_of
from agents.errors import AgentConfigError
from agents.tokens import MIN_ANSWER_TOKENS, max_tokens_for
from approvals import api as approvals
from approvals.models import Approval
from orchestrator import services
from orchestrator.models import PlanEvent, Step
from tests.conftest import wait_for_plan
from tests.fakes import FakeServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.cache_clear()


def one_step_plan(owner: Any, agent: str, prompt: str, **plan: Any) -> Any:
    created = services.plan_create(owner=owner, request=prompt, steps=[
        {"key": "only", "agent": agent, "input": {"prompt": prompt}}], **plan)
    wait_for_plan(created.id)
    return Step.objects.get(plan=created)


def test_a_repeated_identical_step_is_served_from_the_cache_at_zero_cost(
        celery_worker: str, user: Any, fake_server: FakeServer) -> None:
    calls = fake_server.call_count("chat:fake-cached")

    first = one_step_plan(user, "cached_llm", "What is the capital of France?")
    second = one_step_plan(user, "cached_llm", "What is the capital of France?")
    different = one_step_plan(user, "cached_llm", "What is the capital of Spain?")

    assert first.status == second.status == different.status == "succeeded"
    assert fake_server.call_count("chat:fake-cached") == calls + 2  # the repeat never reached the model
    assert first.cost > 0 and "cached" not in first.usage
    assert second.output == first.output
    assert second.cost == Decimal(0) and second.prompt_tokens == second.completion_tokens == 0
    assert second.usage["cached"] is True and second.plan.cost_used == 0
    event = PlanEvent.objects.get(plan=second.plan, type="step.succeeded")
    assert event.data["cached"] is True
    assert "cached" not in PlanEvent.objects.get(plan=first.plan, type="step.succeeded").data
    assert different.cost > 0 and "cached" not in different.usage


def test_a_side_effecting_agent_is_never_served_from_the_cache(
        celery_worker: str, user: Any, fake_server: FakeServer) -> None:
    # given: an agent marked side_effects: true; when: the identical step runs twice
    first = one_step_plan(user, "side_effecting", "send the same mail")
    second = one_step_plan(user, "side_effecting", "send the same mail")
    # then: both calls reached the service (each step's id is its Idempotency-Key)
    assert first.status == second.status == "succeeded"
    assert fake_server.call_count(str(first.id)) == 1 and fake_server.call_count(str(second.id)) == 1
    assert not (second.usage or {}).get("cached")
    # and: configuring a cache on such an agent is refused when the registry loads
    spec = AgentSpec(name="mailer", kind="http", options={"side_effects": True, "cache": {"ttl": 60}})
    with pytest.raises(AgentConfigError, match="side_effects"):
        parse(spec)


def test_routing_uses_the_cheap_model_for_a_simple_input_and_escalates_a_low_confidence_answer(
        celery_worker: str, django_user_model: Any, fake_server: FakeServer) -> None:
    cheap_calls, main_calls = fake_server.call_count("chat:fake-cheap"), fake_server.call_count("chat:fake-main")

    def user() -> Any:  # a new owner per plan: nothing recalled from memory, so the prompts are exactly these
        return django_user_model.objects.create_user(username=f"r{uuid.uuid4().hex[:8]}")

    simple = one_step_plan(user(), "routed", "What is 2+2? confidence:0.9")
    assert simple.usage["model"] == "fake-cheap" and simple.usage["routed"] == "cheap"
    simple_tokens = len("What is 2+2? confidence:0.9") // 4
    assert simple.cost == cost_of("fake-cheap", simple_tokens, 7)
    assert Decimal(simple.usage["saved_cost"]) == cost_of("fake-main", simple_tokens, 7) - simple.cost > 0
    assert PlanEvent.objects.get(plan=simple.plan, type="step.succeeded").data["routed"] == "cheap"

    unsure = one_step_plan(user(), "routed", "What is 3+3? confidence:0.2")
    assert unsure.usage["model"] == "fake-main" and unsure.usage["routed"] == "escalated"
    assert unsure.usage["escalation"] == "low_confidence"
    # both tries count: the fake answers len(prompt) // 4 prompt tokens and 7 completion tokens a call
    tokens = len("What is 3+3? confidence:0.2") // 4
    assert (unsure.prompt_tokens, unsure.completion_tokens) == (2 * tokens, 14)
    cheap_cost = cost_of("fake-cheap", tokens, 7)
    assert unsure.cost == cost_of("fake-main", tokens, 7) + cheap_cost
    assert Decimal(unsure.usage["saved_cost"]) == -cheap_cost  # the cheap try was paid for: a loss
    assert unsure.plan.tokens_used == 2 * tokens + 14

    hard = one_step_plan(user(), "routed", "Please prove that there are infinitely many primes.")
    assert hard.usage["model"] == "fake-main" and hard.usage["routed"] == "main"

    assert fake_server.call_count("chat:fake-cheap") == cheap_calls + 2  # the simple one and the unsure one
    assert fake_server.call_count("chat:fake-main") == main_calls + 2  # the escalation and the hard one


def test_a_steps_max_tokens_follows_what_its_plans_budget_has_left(
        celery_worker: str, user: Any, django_user_model: Any, fake_server: FakeServer) -> None:
    # given: a plan with a budget of 600 tokens, and an agent that may answer 1,000: its step waits for a
    # person to let it go past the budget
    plan = services.plan_create(owner=user, request="news", budget_tokens=600, steps=[
        {"key": "only", "agent": "budgeted", "input": {"prompt": "Summarise the news."}}])
    approver = django_user_model.objects.create_user(username="approver", password="pw", is_staff=True)
    approver.user_permissions.add(Permission.objects.get(codename="decide_approval"))
    approver = django_user_model.objects.get(pk=approver.pk)
    wait_for_plan(plan.id, statuses=("running",))
    deadline = time.monotonic() + 30
    while not Approval.objects.filter(plan_id=plan.id, status="pending").exists():
        assert time.monotonic() < deadline, "the step never waited for approval"
        time.sleep(0.05)
    # when: approved
    approvals.approval_decide(approval_id=Approval.objects.get(plan_id=plan.id).id, user=approver,
                              decision="approve")
    wait_for_plan(plan.id)
    # then: the model was asked for what the budget leaves after the prompt's bound, not its 1,000
    step = Step.objects.get(plan=plan)
    assert step.status == "succeeded"
    asked = fake_server.max_tokens["fake-budgeted"]
    assert asked == 600 - (step.estimated_tokens - 1000) and 16 <= asked < 600
    # and: with no budget, the agent's own max_tokens
    one_step_plan(user, "budgeted", "Summarise the weather.")
    assert fake_server.max_tokens["fake-budgeted"] == 1000


def test_max_tokens_for_caps_by_the_budget_left_with_a_floor() -> None:
    assert max_tokens_for(1000, tokens_left=None, prompt_tokens=50) == 1000
    assert max_tokens_for(1000, tokens_left=5000, prompt_tokens=50) == 1000
    assert max_tokens_for(1000, tokens_left=300, prompt_tokens=50) == 250
    assert max_tokens_for(1000, tokens_left=10, prompt_tokens=50) == MIN_ANSWER_TOKENS


def test_the_cache_key_tells_apart_models_and_prompts_and_a_variant_override_is_not_routed(
        fake_server: FakeServer) -> None:
    call = AgentCall(plan_id="p", step_id="s", step_key="k", attempt=1, input={"prompt": "hi confidence:0.9"},
                     context={}, timeout=10)
    from agents.api import agent_get

    spec = agent_get("cached_llm")
    keys = {cache.cache_key(spec, call), cache.cache_key(spec, AgentCall(**{**call.__dict__, "model": "x"})),
            cache.cache_key(spec, AgentCall(**{**call.__dict__, "system_prompt": "other"})),
            cache.cache_key(spec, AgentCall(**{**call.__dict__, "context": {"a": 1}}))}
    assert len(keys) == 4
    assert cache.cache_key(spec, AgentCall(**{**call.__dict__, "step_id": "other", "attempt": 2})) == \
        cache.cache_key(spec, call)
    pinned = agent_run(name="routed", call=AgentCall(**{**call.__dict__, "model": "fake-pinned"}))
    assert pinned.usage is not None and pinned.usage.model == "fake-pinned" and "routed" not in pinned.usage.marks
