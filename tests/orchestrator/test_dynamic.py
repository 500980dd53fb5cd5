"""Plans that grow while they run (issue 10), through real workers: the research template's dynamic rules,
an output's ``spawn`` field, a step's ``fan_out``, and spawns refused whole."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rich.console import Console

from orchestrator import follow, planning, services
from orchestrator.dynamic import ExpressionError, expression_check, expression_eval
from orchestrator.models import PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import start_worker, stop_worker, wait_for_plan, wait_idle

SLOW_RESEARCH = """
agents:
{agents}
"""


@pytest.fixture(scope="module")
def slow_research(celery_worker: str, test_agents: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The research agents answering offline after 0.4 s, on a queue of their own that a worker of this
    module serves: then "search and reasoning overlap" is something a test can see."""
    from agents import registry

    body = "\n".join(f"  {name}:\n    kind: llm\n    provider: offline\n    latency_ms: 400\n    queue: research_slow"
                     for name in ("query_analyst", "search_agent", "reasoning_agent", "synthesis_agent"))
    layer = tmp_path_factory.mktemp("slow-research") / "agents.slow.yaml"
    layer.write_text(SLOW_RESEARCH.format(agents=body))
    files = os.pathsep.join([test_agents, str(layer)])
    os.environ["AGENTS_FILE"], settings.AGENTS_FILE = files, files
    registry.reload()
    process, name = start_worker("research_slow", files)
    yield files, name
    stop_worker(process)
    os.environ["AGENTS_FILE"], settings.AGENTS_FILE = test_agents, test_agents
    registry.reload()


@pytest.fixture
def slow_research_idle(slow_research: tuple[str, str]) -> Iterator[str]:
    """The module's research worker, and after the test a wait until it is idle: memory archives a plan after
    it ends, and the TRUNCATE between tests must not race that (see conftest.idle_worker)."""
    yield slow_research[0]
    wait_idle(slow_research[1])


def _steps(plan: Any) -> dict[str, Step]:
    return {step.key: step for step in Step.objects.filter(plan=plan)}


def _grown(plan: Any) -> list[dict[str, Any]]:
    return [e.data for e in PlanEvent.objects.filter(plan=plan, type="plan.grown").order_by("id")]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_complex_query_spawns_search_and_reasoning_in_parallel_then_synthesis(slow_research_idle: str,
                                                                                user: Any) -> None:
    plan = services.plan_create(owner=user, request="Compare Rust and Go for command-line tools",
                                template="research")
    assert set(_steps(plan)) == {"query_analysis"}

    plan = wait_for_plan(plan.id, timeout=60)

    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    steps = _steps(plan)
    assert set(steps) == {"query_analysis", "search", "reasoning", "synthesis"}
    assert "Complexity: complex" in steps["query_analysis"].output["text"]
    search, reasoning, synthesis = steps["search"], steps["reasoning"], steps["synthesis"]
    assert max(search.started_at, reasoning.started_at) < min(search.finished_at, reasoning.finished_at)
    assert synthesis.started_at >= max(search.finished_at, reasoning.finished_at)
    assert sorted(synthesis.depends_on) == ["reasoning", "search"]  # named by agent in the template
    assert _grown(plan) == [{"source": "rule", "rule": "complex_query_detected",
                             "steps": ["search", "reasoning", "synthesis"]}]
    buffer = io.StringIO()  # what `manage.py follow` and `make demo` print
    follow.follow(plan.id, console=Console(file=buffer, width=200, color_system=None), timeout=5)
    assert "query_analysis: rule 'complex_query_detected' fired, spawned search, reasoning, synthesis" in (
        buffer.getvalue())


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_simple_query_gets_a_direct_answer(slow_research_idle: str, user: Any) -> None:
    plan = wait_for_plan(services.plan_create(owner=user, request="What is a battery?", template="research").id,
                         timeout=60)

    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    steps = _steps(plan)
    assert set(steps) == {"query_analysis", "answer"}
    assert steps["answer"].depends_on == ["query_analysis"]
    assert plan.result == steps["answer"].output
    assert _grown(plan) == [{"source": "rule", "rule": "simple_query_detected", "steps": ["answer"]}]


def _overlap(spans: list[tuple[Any, Any]]) -> int:
    """The most spans running at one moment."""
    return max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_a_fan_out_of_20_runs_in_parallel_and_its_join_waits_for_all(user: Any) -> None:
    steps = [
        {"key": "split", "agent": "emit", "input": {"output": {"items": [f"item {i}" for i in range(20)]}},
         "fan_out": {"over": "items", "agent": "emit", "input": {"sleep": 0.5}, "input_key": "output"}},
        {"key": "join", "agent": "echo", "depends_on": ["split"]},
    ]

    plan = wait_for_plan(services.plan_create(owner=user, request="fan out", steps=steps).id, timeout=60)

    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    by_key = _steps(plan)
    children = [by_key[f"split-{i}"] for i in range(1, 21)]
    assert len(by_key) == 22
    assert [child.output for child in children] == [f"item {i}" for i in range(20)]
    assert all(child.depends_on == ["split"] for child in children)
    spans = [(child.started_at, child.finished_at) for child in children]
    assert _overlap(spans) >= 8, "the fan-out's steps should run side by side (16 worker threads)"
    assert (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds() < 20 * 0.5 / 2
    join = by_key["join"]
    assert join.started_at >= max(end for _, end in spans)
    assert join.output["from"] == sorted(["split", *(child.key for child in children)])
    assert _grown(plan) == [{"source": "fan_out", "steps": [f"split-{i}" for i in range(1, 21)]}]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_an_agent_spawns_steps_and_its_dependents_wait_for_them(user: Any) -> None:
    spawn = [{"key": "extra_a", "agent": "emit", "input": {"sleep": 0.3, "output": "a"}},
             {"key": "extra_b", "agent": "echo", "depends_on": ["extra_a"]}]
    steps = [{"key": "boss", "agent": "emit", "input": {"output": {"spawn": spawn}}},
             {"key": "after", "agent": "echo", "depends_on": ["boss"]}]

    plan = wait_for_plan(services.plan_create(owner=user, request="spawn", steps=steps).id, timeout=60)

    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    by_key = _steps(plan)
    assert by_key["extra_a"].depends_on == ["boss"]  # no dependency given: after the step that spawned it
    assert by_key["after"].started_at >= max(by_key["extra_a"].finished_at, by_key["extra_b"].finished_at)
    assert by_key["extra_b"].started_at >= by_key["extra_a"].finished_at
    assert _grown(plan) == [{"source": "spawn", "steps": ["extra_a", "extra_b"]}]


BAD_SPAWNS = {
    "plan.cycle": {"output": {"spawn": [{"key": "loop", "agent": "echo", "depends_on": ["after"]}]}},
    "plan.unknown_agent": {"output": {"spawn": [{"key": "fine", "agent": "echo"},
                                                {"key": "bad", "agent": "summon_demon"}]}},
    "plan.too_many_steps": {"output": {"spawn": [{"key": f"s{i}", "agent": "echo"} for i in range(600)]}},
    "spawn.fan_out_too_large": {"output": {"items": list(range(101))}},
    "plan.invalid_schema": {"output": {"spawn": [{"agent": "echo"}]}},
}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
@pytest.mark.parametrize("code", sorted(BAD_SPAWNS))
def test_a_bad_spawn_is_refused_whole_and_nothing_of_it_runs(user: Any, code: str) -> None:
    boss: dict[str, Any] = {"key": "boss", "agent": "emit", "input": BAD_SPAWNS[code]}
    if code == "spawn.fan_out_too_large":
        boss["fan_out"] = {"over": "items", "agent": "echo"}
    steps = [boss, {"key": "after", "agent": "echo", "depends_on": ["boss"]}]

    plan = wait_for_plan(services.plan_create(owner=user, request="bad spawn", steps=steps).id, timeout=60)

    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, code)
    by_key = _steps(plan)
    assert set(by_key) == {"boss", "after"}  # nothing of the spawn was added
    assert (by_key["boss"].status, by_key["boss"].error_code) == (StepStatus.FAILED, code)
    assert by_key["boss"].output == BAD_SPAWNS[code]["output"]  # what it answered is kept
    assert by_key["after"].status == StepStatus.CANCELLED and by_key["after"].started_at is None
    assert not PlanEvent.objects.filter(plan=plan, type="plan.grown").exists()
    refused = PlanEvent.objects.get(plan=plan, type="plan.spawn_refused")
    assert (refused.step_key, refused.data["code"]) == ("boss", code)


# --- the template's rules and the trigger language, validated when the template loads --------------------

RESEARCHISH = {"initial_tasks": [{"key": "first", "agent": "echo"}],
               "triggers": {"big": {"after": "first", "when": "len(output.input) > 0"}},
               "dynamic_rules": [{"trigger": "big", "spawn_tasks": [{"agent": "echo", "key": "second"}]}]}


@pytest.mark.parametrize(("change", "message"), [
    ({"triggers": {"big": {"after": "first", "when": "__import__('os')"}}}, "names '__import__'"),
    ({"triggers": {"big": {"after": "first", "when": "output.__class__"}}}, "attributes starting with '_'"),
    ({"triggers": {"big": {"after": "first", "when": "len(output) >"}}}, "not a valid expression"),
    ({"triggers": {"big": {"after": "nowhere", "when": "True"}}}, "no step is called"),
    ({"dynamic_rules": [{"trigger": "small", "spawn_tasks": [{"agent": "echo"}]}]}, "unknown trigger 'small'"),
    ({"dynamic_rules": [{"trigger": "big", "spawn_tasks": [{"agent": "echo", "depends_on": ["ghost"]}]}]},
     "depends on 'ghost'"),
    ({"dynamic_rules": [{"trigger": "big", "spawn_tasks": [{"agent": "echo", "paralel": True}]}]},
     "Extra inputs are not permitted"),
    ({"steps": [{"key": "x", "agent": "echo"}]}, "not both"),
])
def test_a_bad_rule_is_refused_when_the_template_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       change: dict[str, Any], message: str) -> None:
    import yaml

    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**RESEARCHISH, **change}))
    monkeypatch.setattr(settings, "ORCH_WORKFLOWS_DIR", tmp_path)
    planning._template_files.cache_clear()
    try:
        with pytest.raises(planning.PlanInvalid) as caught:
            planning.template_load("bad")
    finally:
        planning._template_files.cache_clear()
    assert caught.value.code == "plan.invalid_schema"
    assert message in caught.value.message


def test_triggers_are_evaluated_safely_over_output_and_inputs() -> None:
    assert expression_eval("contains(output.text, 'COMPLEXITY: complex') and inputs.depth > 1",
                           output={"text": "... Complexity: complex"}, inputs={"depth": 2})
    with pytest.raises(ExpressionError):
        expression_eval("output.missing", output={}, inputs={})
    with pytest.raises(ExpressionError):
        expression_check("open('/etc/passwd')")


def test_manage_py_check_names_an_unknown_agent_in_a_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from orchestrator.checks import workflow_templates

    rules = [{"trigger": "big", "spawn_tasks": [{"agent": "summon_demon", "key": "second"}]}]
    (tmp_path / "spooky.yaml").write_text(yaml.safe_dump({**RESEARCHISH, "dynamic_rules": rules}))
    monkeypatch.setattr(settings, "ORCH_WORKFLOWS_DIR", tmp_path)
    planning._template_files.cache_clear()
    try:
        errors = workflow_templates()
    finally:
        planning._template_files.cache_clear()
    assert [(e.id, e.msg) for e in errors] == [
        ("orchestrator.E002", "workflow template 'spooky': dynamic_rules.0 spawns unknown agent 'summon_demon'")]
