"""Plans are validated whole: every bad plan is rejected with its own code, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from orchestrator import planning
from orchestrator.planning import PlanInvalid, StepSpec
from tests.fakes import PLANS

AGENTS = {"echo", "search_agent"}


def codes_of(text: str) -> str:
    with pytest.raises(PlanInvalid) as caught:
        planning.validate(planning.parse_plan_json(text), known_agents=AGENTS,
                          max_steps=500)
    return caught.value.code


@pytest.mark.parametrize(("scenario", "code"), [
    ("malformed", "plan.malformed_json"),
    ("cycle", "plan.cycle"),
    ("unknown_agent", "plan.unknown_agent"),
    ("dangling", "plan.unknown_dependency"),
    ("too_many", "plan.too_many_steps"),
    ("schema", "plan.invalid_schema"),
    ("empty", "plan.empty"),
])
def test_bad_llm_plans_are_rejected_with_their_code(scenario: str, code: str) -> None:
    assert codes_of(PLANS[scenario]) == code


def test_duplicate_step_keys_are_rejected() -> None:
    text = json.dumps({"steps": [{"key": "a", "agent": "echo"}, {"key": "a", "agent": "echo"}]})
    assert codes_of(text) == "plan.duplicate_step"


def test_a_self_dependency_is_a_cycle() -> None:
    assert codes_of(json.dumps({"steps": [{"key": "a", "agent": "echo", "depends_on": ["a"]}]})) == "plan.cycle"


def test_the_cycle_message_names_the_steps() -> None:
    with pytest.raises(PlanInvalid) as caught:
        planning.validate(planning.parse_plan_json(PLANS["cycle"]), known_agents=AGENTS)
    assert "a -> b" in caught.value.message or "b -> a" in caught.value.message


def test_a_fenced_json_answer_is_accepted() -> None:
    specs = planning.parse_plan_json(PLANS["fenced"])
    assert specs == [StepSpec(key="only", agent="echo")]


def test_the_research_template_is_the_guides_shape() -> None:
    specs, inputs = planning.template_plan("research", request="Why is the sky blue?", inputs={})

    deps = {spec.key: set(spec.depends_on) for spec in specs}
    assert deps == {"query_analysis": set()}  # search, reasoning, synthesis or answer: its dynamic rules
    rules = planning.template_load("research").rules
    assert [[task.step_key for task in rule.spawn_tasks] for rule in rules] == [
        ["search", "reasoning", "synthesis"], ["answer"]]
    assert inputs == {"query": "Why is the sky blue?"}
    assert "Why is the sky blue?" in specs[0].input["prompt"]


def test_an_unknown_template_is_named_in_the_error() -> None:
    with pytest.raises(PlanInvalid) as caught:
        planning.template_plan("nope", request="x", inputs={})
    assert caught.value.code == "plan.unknown_template"
    assert "research" in caught.value.message


def test_a_reference_to_a_missing_input_is_rejected() -> None:
    with pytest.raises(PlanInvalid) as caught:
        planning.render([StepSpec("a", "echo", {"prompt": "{{ inputs.topic }}"})], {})
    assert caught.value.code == "plan.bad_reference"
