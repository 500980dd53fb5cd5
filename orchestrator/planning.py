"""From a request to validated step specs: YAML workflow templates and the LLM planner's JSON.

Nothing here touches the database: a plan is validated whole before any of it is stored.
Error codes (stable, listed in docs/errors.md): plan.malformed_json, plan.invalid_schema, plan.empty,
plan.too_many_steps, plan.duplicate_step, plan.unknown_agent, plan.unknown_dependency, plan.cycle,
plan.bad_reference, plan.missing_input, plan.unknown_template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from agents.api import AgentCall, agent_list, agent_run
from common.errors import DomainError

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
RISKS = ("low", "medium", "high")
INPUT_REF = re.compile(r"\{\{\s*inputs\.(\w+)\s*\}\}")


class PlanInvalid(DomainError):
    code = "plan.invalid"


@dataclass(frozen=True)
class StepSpec:
    key: str
    agent: str
    input: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    risk: str = "low"
    approval: bool = False  # the plan asks for a person to approve this step before it runs


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    steps: tuple[StepSpec, ...]


def _invalid(code: str, message: str) -> PlanInvalid:
    return PlanInvalid(message, code=f"plan.{code}")


def parse_steps(raw: Any) -> list[StepSpec]:
    """Turn ``{"steps": [...]}`` (or a bare list) into specs; raises PlanInvalid(plan.invalid_schema)."""
    items = raw.get("steps") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise _invalid("invalid_schema", 'a plan is {"steps": [...]}, a list of steps')
    specs = []
    for index, item in enumerate(items):
        where = f"step {index + 1}"
        if not isinstance(item, dict):
            raise _invalid("invalid_schema", f"{where} is not an object")
        key, agent = item.get("key"), item.get("agent")
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise _invalid("invalid_schema", f"{where}: 'key' must match {KEY_PATTERN.pattern}, got {key!r}")
        if not isinstance(agent, str) or not agent:
            raise _invalid("invalid_schema", f"step {key!r}: 'agent' must be an agent's name")
        step_input = item.get("input", {})
        if isinstance(step_input, str):
            step_input = {"prompt": step_input}
        if not isinstance(step_input, dict):
            raise _invalid("invalid_schema", f"step {key!r}: 'input' must be an object")
        deps = item.get("depends_on", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise _invalid("invalid_schema", f"step {key!r}: 'depends_on' must be a list of step keys")
        risk = item.get("risk", "low")
        if risk not in RISKS:
            raise _invalid("invalid_schema", f"step {key!r}: 'risk' must be one of {', '.join(RISKS)}")
        approval = item.get("approval", False)
        if not isinstance(approval, bool):
            raise _invalid("invalid_schema", f"step {key!r}: 'approval' must be true or false")
        specs.append(StepSpec(key=key, agent=agent, input=step_input, depends_on=tuple(dict.fromkeys(deps)),
                              risk=risk, approval=approval))
    return specs


def parse_plan_json(text: str) -> list[StepSpec]:
    """The LLM planner's answer: JSON (a ```json fence is tolerated). Raises PlanInvalid."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    try:
        raw = json.loads(fenced.group(1) if fenced else body)
    except json.JSONDecodeError as exc:
        raise _invalid("malformed_json", f"the planner's answer is not JSON: {exc}") from None
    return parse_steps(raw)


def validate(specs: list[StepSpec], *, known_agents: set[str], existing: dict[str, tuple[str, ...]] | None = None,
             max_steps: int | None = None) -> None:
    """Check a whole plan (or steps added to ``existing`` ones: key -> depends_on). Raises PlanInvalid."""
    existing = existing or {}
    limit = max_steps or settings.ORCH_MAX_STEPS
    if not specs:
        raise _invalid("empty", "the plan has no steps")
    if len(specs) + len(existing) > limit:
        raise _invalid("too_many_steps", f"the plan has {len(specs) + len(existing)} steps; the limit is {limit}")
    graph: dict[str, tuple[str, ...]] = dict(existing)
    for spec in specs:
        if spec.key in graph:
            raise _invalid("duplicate_step", f"two steps are named {spec.key!r}")
        graph[spec.key] = spec.depends_on
    for spec in specs:
        if spec.agent not in known_agents:
            raise _invalid("unknown_agent", f"step {spec.key!r} uses unknown agent {spec.agent!r}; "
                                            f"known agents: {', '.join(sorted(known_agents))}")
        for dep in spec.depends_on:
            if dep not in graph:
                raise _invalid("unknown_dependency", f"step {spec.key!r} depends on {dep!r}, which is not a step")
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise _invalid("cycle", f"the steps depend on each other in a cycle: {cycle}") from None


def render(specs: list[StepSpec], inputs: dict[str, Any]) -> list[StepSpec]:
    """Replace ``{{ inputs.NAME }}`` in every string of every step's input. Raises PlanInvalid."""

    def fill(value: Any, key: str) -> Any:
        if isinstance(value, str):
            def sub(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in inputs:
                    raise _invalid("bad_reference", f"step {key!r} refers to missing input {name!r}")
                return str(inputs[name])
            return INPUT_REF.sub(sub, value)
        if isinstance(value, dict):
            return {k: fill(v, key) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, key) for v in value]
        return value

    return [StepSpec(s.key, s.agent, fill(s.input, s.key), s.depends_on, s.risk, s.approval) for s in specs]


@cache
def _template_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted(Path(settings.ORCH_WORKFLOWS_DIR).glob("*.yaml"))}


def template_names() -> list[str]:
    return sorted(_template_files())


def template_load(name: str) -> Template:
    """Raises PlanInvalid(plan.unknown_template / plan.invalid_schema)."""
    path = _template_files().get(name)
    if path is None:
        raise _invalid("unknown_template", f"no workflow template named {name!r}; "
                                           f"templates: {', '.join(template_names()) or 'none'}")
    raw = yaml.safe_load(path.read_text()) or {}
    return Template(name=name, description=raw.get("description", ""), inputs=raw.get("inputs") or {},
                    steps=tuple(parse_steps(raw)))


def template_plan(name: str, *, request: str, inputs: dict[str, Any]) -> tuple[list[StepSpec], dict[str, Any]]:
    """The template's steps with inputs filled in; the request text stands in for a missing ``query``."""
    template = template_load(name)
    filled = dict(inputs)
    if "query" in template.inputs and "query" not in filled and request:
        filled["query"] = request
    for input_name, spec in template.inputs.items():
        if (spec or {}).get("required") and input_name not in filled:
            raise _invalid("missing_input", f"template {name!r} needs input {input_name!r}")
    specs = render(list(template.steps), filled)
    validate(specs, known_agents=known_agents())
    return specs, filled


def known_agents() -> set[str]:
    return {spec.name for spec in agent_list()}


PLANNER_AGENT = "planner"


def llm_plan(*, request: str, plan_id: str, step_id: str) -> list[StepSpec]:
    """Ask the planner agent for a plan and validate it. Calls an LLM: never inside a transaction.

    Raises PlanInvalid for a bad plan and AgentError when the planner itself fails.
    """
    catalogue = [{"name": s.name, "description": s.description, "capabilities": list(s.capabilities)}
                 for s in agent_list() if s.name != PLANNER_AGENT]
    prompt = (f"AGENTS: {json.dumps(catalogue)}\nAt most {settings.ORCH_MAX_STEPS} steps.\n"
              f"REQUEST: {request}")
    call = AgentCall(plan_id=plan_id, step_id=step_id, step_key="plan", attempt=1,
                     input={"prompt": prompt, "response_format": "json"}, context={},
                     timeout=settings.ORCH_STEP_TIMEOUT_DEFAULT)
    result = agent_run(name=PLANNER_AGENT, call=call)
    text = result.output.get("text", "") if isinstance(result.output, dict) else str(result.output)
    specs = parse_plan_json(text)
    validate(specs, known_agents=known_agents())
    return specs
