"""Context assembly within a token budget, recording what it cut and why; end to end on real workers, a second
plan recalls the first plan's episode, and the cut is on the step's events (what the API and live page show)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from memory import api
from memory.models import MemoryItem, WorkingEntry
from orchestrator import services
from orchestrator.events import events_after
from orchestrator.models import PlanEvent
from orchestrator.services import plan_create
from tests.conftest import wait_for_plan

REQUEST = "How do solid-state batteries compare with lithium-ion ones?"


@pytest.mark.django_db(transaction=True)
def test_assembly_respects_the_budget_and_records_what_it_cut(user: Any) -> None:
    owner, plan_id = api.Owner(user.pk), uuid.uuid4()
    api.memory_add(owner=owner, text="Solid-state batteries use a solid electrolyte.", kind="fact")
    api.memory_add(owner=owner, text="Lisbon trams are yellow and run on line 28.", kind="fact")
    api.working_set(owner=owner, plan_id=plan_id, name="notes", value="electrolyte matters")
    dependencies = {"search": {"text": "s" * 4000}, "analysis": {"text": "short analysis"}}

    assembled = api.context_assemble(owner=owner, plan_id=plan_id, step_key="synthesis", agent="synthesis_agent",
                                     step_input={"prompt": "How do solid-state batteries work?"},
                                     dependencies=dependencies, budget_tokens=600)

    report = assembled.report()
    assert assembled.tokens <= 600 and report["tokens"] == assembled.tokens
    assert api.tokens(assembled.context) <= 600
    assert assembled.context["analysis"] == {"text": "short analysis"}
    assert assembled.context["search"]["truncated"] is True
    cut = {c["part"]: c for c in report["cut"]}
    assert cut["dependency:search"]["reason"] == "budget" and cut["dependency:search"]["tokens"] > 0
    assert assembled.context["_working"] == {"notes": "electrolyte matters"}
    assert [m["text"] for m in assembled.context["_memory"]] == ["Solid-state batteries use a solid electrolyte."]
    irrelevant = [c for c in report["cut"] if c["reason"] == "relevance"]
    assert len(irrelevant) == 1 and irrelevant[0]["part"].startswith("memory:")
    assert "electrolyte" not in repr(report)  # the record holds sizes and ids, not memory content


@pytest.mark.django_db(transaction=True)
def test_a_tiny_budget_cuts_memories_for_budget(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.memory_add(owner=owner, text="Solid-state batteries use a solid electrolyte.", kind="fact")

    assembled = api.context_assemble(owner=owner, plan_id=None, step_key="s", agent="a",
                                     step_input={"prompt": "solid-state batteries"}, dependencies={}, budget_tokens=10)

    assert "_memory" not in assembled.context and assembled.tokens <= 10
    assert [c.reason for c in assembled.cut] == ["budget"]


def _episode_of(plan_id: uuid.UUID, timeout: float = 15) -> MemoryItem:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = MemoryItem.objects.filter(kind="episode", plan_id=plan_id, step_key="").first()
        if item is not None:
            return item
        time.sleep(0.1)
    raise AssertionError(f"no episode of plan {plan_id}")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_a_second_plan_recalls_the_first_plans_episode_in_its_assembled_context(user: Any) -> None:
    first = plan_create(owner=user, request=REQUEST, template="research")
    assert wait_for_plan(first.id).status == "succeeded"
    episode = _episode_of(first.id)

    second = plan_create(owner=user, request=REQUEST, template="research")
    assert wait_for_plan(second.id).status == "succeeded"

    first_events = {e.step_key: e.data for e in PlanEvent.objects.filter(plan=first, type="step.context")}
    second_events = {e.step_key: e.data for e in PlanEvent.objects.filter(plan=second, type="step.context")}
    assert set(second_events) == {"query_analysis", "search", "reasoning", "synthesis"}
    assert first_events["query_analysis"]["recalled"] == []  # nothing to recall the first time
    recalled = second_events["query_analysis"]["recalled"]
    assert str(episode.id) in [r["id"] for r in recalled]
    assert all(r["plan_id"] == str(first.id) for r in recalled)  # never its own plan's episodes
    assert MemoryItem.objects.get(id=episode.id).recall_count >= 1
    # The first plan's scratchpad was archived, and each step left an episode.
    assert MemoryItem.objects.filter(kind="episode", plan_id=first.id).exclude(step_key="").count() == 4
    # What the event stream (API and live page) serves: the record, not redacted.
    served = [e for e in events_after(plan_id=second.id) if e["type"] == "step.context"]
    assert any(str(episode.id) in [r["id"] for r in e["data"]["recalled"]] for e in served)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_an_oversized_dependency_is_truncated_and_the_cut_recorded_on_the_step(user: Any) -> None:
    steps = [{"key": "big", "agent": "echo", "input": {"blob": "x" * 40_000}},
             {"key": "ask", "agent": "query_analyst", "input": {"prompt": "Summarise"}, "depends_on": ["big"]}]

    plan = plan_create(owner=user, request="too much context", steps=steps)
    assert wait_for_plan(plan.id).status == "succeeded"

    record = PlanEvent.objects.get(plan=plan, type="step.context", step_key="ask").data
    assert record["budget"] == 6000 and record["tokens"] <= 6000
    assert [c["part"] for c in record["cut"] if c["reason"] == "budget"] == ["dependency:big"]
    assert not PlanEvent.objects.filter(plan=plan, type="step.context", step_key="big").exists()  # not an llm step


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_memory_agent_steps_write_and_search_memory_explicitly(user: Any) -> None:
    steps = [{"key": "note", "agent": "memory", "input": {"action": "write", "name": "topic", "value": "trams"}},
             {"key": "fact", "agent": "memory", "input": {"action": "remember", "text": "Lisbon trams are yellow."}},
             {"key": "find", "agent": "memory", "depends_on": ["fact"],
              "input": {"action": "search", "query": "yellow trams", "kinds": ["fact"]}},
             {"key": "read", "agent": "memory", "input": {"action": "read"}, "depends_on": ["note"]},
             {"key": "bad", "agent": "memory", "input": {"action": "forget everything"}}]

    plan = plan_create(owner=user, request="memory steps", steps=steps)
    wait_for_plan(plan.id)

    outputs = {s.key: s for s in plan.steps.all()}
    assert outputs["fact"].output["action"] == "add"
    assert [r["text"] for r in outputs["find"].output["results"]] == ["Lisbon trams are yellow."]
    assert outputs["read"].output == {"working": {"topic": {"value": "trams", "version": 1}}}
    assert outputs["bad"].status == "failed" and outputs["bad"].error_code == "memory.invalid"
    assert api.memory_list(owner=api.Owner(user.pk), kind="fact")[0].source == f"plan:{plan.id}/step:fact"


def test_the_budget_comes_from_the_agent_and_its_models_window() -> None:
    from orchestrator.services.memory import context_budget

    assert context_budget({}) == 6000
    assert context_budget({"context_budget": 900}) == 900
    assert context_budget({"context_window": 4096, "max_tokens": 1024}) == 3072
    assert context_budget({"context_budget": 2000, "context_window": 128_000}) == 2000


@pytest.mark.django_db(transaction=True)
def test_steps_episodes_wait_for_the_plans_end_and_archiving_twice_leaves_one_of_each(user: Any) -> None:
    steps = [{"key": "a", "agent": "held"}, {"key": "b", "agent": "held"}, {"key": "quiet", "agent": "held"},
             {"key": "odd", "agent": "held"}]
    plan = plan_create(owner=user, request=REQUEST, steps=steps)
    ids = {s.key: s.id for s in plan.steps.all()}
    odd = {"text": "An agent that says how much it matters in words.", "memory": {"significance": "high"}}
    for key, output in (("a", {"text": "Trams in Lisbon are yellow."}), ("quiet", None), ("odd", odd)):
        services.step_claim(step_id=ids[key], attempt=1, worker="w")
        assert services.step_succeed(step_id=ids[key], attempt=1, output=output, usage=None)
    assert not MemoryItem.objects.filter(kind="episode", plan_id=plan.id).exists()  # the plan still runs
    services.step_claim(step_id=ids["b"], attempt=1, worker="w")
    services.step_fail(step_id=ids["b"], attempt=1, code="agent.error", message="the tram was late")

    for _ in range(2):  # at-least-once delivery of orchestrator.plan_remember
        services.plan_remember(plan_id=plan.id)

    episodes = {e.step_key: e for e in MemoryItem.objects.filter(kind="episode", plan_id=plan.id)}
    assert sorted(episodes) == ["", "a", "b", "odd"]  # a no-op success leaves no episode
    assert episodes["odd"].significance == 0.5  # "high" is not a number: the default holds
    assert (episodes["a"].significance, episodes["b"].significance, episodes[""].significance) == (0.5, 0.8, 1.0)
    text = api.memory_get(owner=api.Owner(user.pk), memory_id=episodes["b"].id).text
    assert text.startswith("Step b (held) failed.") and text.endswith("Answer: the tram was late")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_a_steps_scratchpad_entries_are_written_before_the_steps_it_frees_can_start(user: Any) -> None:
    """Before: they were written after the success was recorded, so a step it freed, started at once on another
    worker, could read the scratchpad without them (seen in CI)."""
    output = {"text": "noted", "memory": {"working": {"line": 28}}}
    steps = [{"key": "note", "agent": "emit", "input": {"output": output}},
             *({"key": f"read{i}", "agent": "memory", "input": {"action": "read"}, "depends_on": ["note"]}
               for i in range(4)),
             {"key": "wait", "agent": "held"}]  # keeps the plan, and so its scratchpad, open
    plan = plan_create(owner=user, request="a scratchpad read by the next steps", steps=steps)
    reads = plan.steps.filter(key__startswith="read")
    deadline = time.monotonic() + 30
    while reads.filter(status="succeeded").count() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert [r.output["working"]["line"] for r in reads] == [{"value": 28, "version": 1}] * 4
    entry = WorkingEntry.objects.get(plan_id=plan.id, name="line")
    assert entry.updated_at <= plan.steps.get(key="note").finished_at
    services.plan_cancel(plan_id=plan.id)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_a_cancelled_plan_is_archived_too_with_its_scratchpad(user: Any) -> None:
    """Before: only a plan whose last step ended was archived; a cancelled one left no episode, and its
    scratchpad waited for the TTL."""
    output = {"text": "Line 28 is the tourist line.", "memory": {"working": {"line": 28}}}
    steps = [{"key": "note", "agent": "emit", "input": {"output": output}}, {"key": "wait", "agent": "held"}]
    plan = plan_create(owner=user, request="a cancelled plan", steps=steps)
    deadline = time.monotonic() + 30
    while plan.steps.get(key="note").status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.working_read(owner=api.Owner(user.pk), plan_id=plan.id)["line"].value == 28

    services.plan_cancel(plan_id=plan.id)

    episode = _episode_of(plan.id)
    assert "Plan cancelled: a cancelled plan" in api.memory_get(owner=api.Owner(user.pk), memory_id=episode.id).text
    assert 'Working memory: {"line": 28}' in api.memory_get(owner=api.Owner(user.pk), memory_id=episode.id).text
    assert MemoryItem.objects.filter(kind="episode", plan_id=plan.id, step_key="note").exists()
    assert api.working_read(owner=api.Owner(user.pk), plan_id=plan.id) == {}
