"""From a request to validated step specs: YAML workflow templates and the LLM planner's JSON.

Nothing here touches the database: a plan is validated whole before any of it is stored.
Error codes (stable, listed in docs/errors.md): plan.malformed_json, plan.invalid_schema, plan.empty,
plan.too_many_steps, plan.duplicate_step, plan.unknown_agent, plan.unknown_dependency, plan.cycle,
plan.bad_reference, plan.missing_input, plan.unknown_template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from django.conf import settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from agents.api import AgentCall, AgentError, Usage, agent_list, agent_run
from common.errors import DomainError
from orchestrator.dynamic import RuleModel, TriggerModel, rules_check

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
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
    fan_out: dict[str, Any] | None = None  # issue 10: one step per item of a list in its output (FanOutModel)
    replan: bool = False  # issue 10: once it succeeds, the planner is asked to extend the plan after it


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    steps: tuple[StepSpec, ...]
    triggers: dict[str, TriggerModel] = field(default_factory=dict)  # issue 10: orchestrator/dynamic.py
    rules: tuple[RuleModel, ...] = ()


def _invalid(code: str, message: str) -> PlanInvalid:
    return PlanInvalid(message, code=f"plan.{code}")


class FanOutModel(BaseModel):
    """When the step succeeds, one ``agent`` step per item of the list at ``over`` (a dotted path into its
    output), each with ``input`` plus ``{input_key: item}``, keyed ``STEP-1``, ``STEP-2``...; the steps that
    depend on this one wait for all of them (services/growth.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    over: Annotated[StrictStr, StringConstraints(min_length=1, max_length=200)]
    agent: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    input: dict[str, Any] = Field(default_factory=dict)
    input_key: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)] = "item"


class StepModel(BaseModel):
    """One step as every surface gives it: the REST API, MCP, workflow templates and the LLM planner (whose
    JSON schema, ``PlanModel.model_json_schema()``, is handed to the model as its output format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[StrictStr, StringConstraints(pattern=KEY_PATTERN.pattern)] = Field(
        description="unique within the plan; lowercase letters, digits, '_' and '-'")
    agent: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)] = Field(
        description="the name of an agent (GET /api/agents/)")
    input: dict[str, Any] | StrictStr = Field(default_factory=dict,
                                              description="what the agent receives; a string means {'prompt': ...}")
    depends_on: list[Annotated[StrictStr, StringConstraints(max_length=100)]] = Field(
        default_factory=list, description="keys of the steps whose outputs this one needs")
    risk: Literal["low", "medium", "high"] = Field(default="low",
                                                   description="raises the agent's risk, never lowers it")
    approval: StrictBool = Field(default=False, description="a person approves this step before it runs")
    fan_out: FanOutModel | None = Field(default=None, description="one step per item of a list in its output")
    replan: StrictBool = Field(default=False, description="once it succeeds, the planner may add steps after it "
                                                          "(a limited number of rounds per plan)")

    def spec(self) -> StepSpec:
        step_input = {"prompt": self.input} if isinstance(self.input, str) else dict(self.input)
        return StepSpec(key=self.key, agent=self.agent, input=step_input,
                        depends_on=tuple(dict.fromkeys(self.depends_on)), risk=self.risk, approval=self.approval,
                        fan_out=self.fan_out.model_dump() if self.fan_out else None, replan=self.replan)


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[StepModel]


class TemplateInputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    required: StrictBool = False
    description: str = ""


class TemplateModel(PlanModel):
    """A workflow template file (workflows/NAME.yaml). ``initial_tasks`` is the guide's name for ``steps``;
    ``triggers`` and ``dynamic_rules`` grow the plan while it runs (orchestrator/dynamic.py)."""

    name: str = ""
    description: str = ""
    inputs: dict[str, TemplateInputModel] = Field(default_factory=dict)
    triggers: dict[Annotated[StrictStr, StringConstraints(pattern=KEY_PATTERN.pattern)], TriggerModel] = Field(
        default_factory=dict)
    dynamic_rules: list[RuleModel] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _initial_tasks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "initial_tasks" in data:
            if "steps" in data:
                raise ValueError("give initial_tasks or steps, not both")
            data = {**data, "steps": data["initial_tasks"]}
            del data["initial_tasks"]
        return data

    @model_validator(mode="after")
    def _rules(self) -> TemplateModel:
        rules_check(initial_keys=[step.key for step in self.steps], triggers=self.triggers,
                    rules=self.dynamic_rules)
        return self


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where}: {detail['msg']}" if where else str(detail["msg"])


def parse_steps(raw: Any) -> list[StepSpec]:
    """Turn ``{"steps": [...]}`` (or a bare list) into specs; raises PlanInvalid(plan.invalid_schema)."""
    if isinstance(raw, list):
        raw = {"steps": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list):
        raise _invalid("invalid_schema", 'a plan is {"steps": [...]}, a list of steps')
    try:
        plan = PlanModel.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("invalid_schema", _first_error(exc)) from None
    return [step.spec() for step in plan.steps]


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
        for agent in (spec.agent, *([spec.fan_out["agent"]] if spec.fan_out else [])):
            if agent not in known_agents:
                raise _invalid("unknown_agent", f"step {spec.key!r} uses unknown agent {agent!r}; "
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

    return [replace(s, input=fill(s.input, s.key)) for s in specs]


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
    try:
        model = TemplateModel.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise _invalid("invalid_schema", f"workflow template {name!r} ({path}): {detail}") from None
    return Template(name=name, description=model.description,
                    inputs={key: spec.model_dump() for key, spec in model.inputs.items()},
                    steps=tuple(step.spec() for step in model.steps), triggers=dict(model.triggers),
                    rules=tuple(model.dynamic_rules))


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


@dataclass(frozen=True)
class PlannerAnswer:
    """What the planner said: its specs, or the error that makes the plan fail; and what it spent."""

    specs: list[StepSpec]
    error: DomainError | None
    usage: Usage | None


def _catalogue() -> list[dict[str, Any]]:
    return [{"name": s.name, "description": s.description, "capabilities": list(s.capabilities)}
            for s in agent_list() if s.name != PLANNER_AGENT]


REPLAN_MARK = "EXTEND THE PLAN AFTER STEP:"


def replan_input(*, request: str, after: str, existing: list[str]) -> dict[str, Any]:
    """The input of a planner step that extends a running plan after step ``after`` (services/growth.py): it
    receives that step's output as context and answers with a JSON plan of the steps to add (keys new)."""
    prompt = (f"AGENTS: {json.dumps(_catalogue())}\n"
              f"Answer with JSON matching this schema: {json.dumps(PlanModel.model_json_schema())}\n"
              f"Steps the plan has (do not reuse these keys; you may depend on them): {', '.join(existing)}\n"
              f"{REPLAN_MARK} {after}\nGiven its result, add the steps still needed, or none ({{\"steps\": []}} "
              "is refused: answer at least one step).\n"
              f"REQUEST: {request}")
    return {"prompt": prompt, "response_format": "json", "replan_of": after}


def llm_plan(*, request: str, plan_id: str, attempt: int, deadline: float | None = None) -> PlannerAnswer:
    """Ask the planner agent for a plan and validate it. Calls an LLM: never inside a transaction.

    A bad plan (PlanInvalid) or a failed planner (AgentError) comes back as the answer's error, with the
    tokens the planner spent either way."""
    prompt = (f"AGENTS: {json.dumps(_catalogue())}\nAt most {settings.ORCH_MAX_STEPS} steps.\n"
              f"Answer with JSON matching this schema: {json.dumps(PlanModel.model_json_schema())}\n"
              f"REQUEST: {request}")
    call = AgentCall(plan_id=plan_id, step_id=plan_id, step_key="plan", attempt=attempt,
                     input={"prompt": prompt, "response_format": "json"}, context={},
                     timeout=settings.ORCH_STEP_TIMEOUT_DEFAULT, deadline=deadline)
    try:
        result = agent_run(name=PLANNER_AGENT, call=call)
    except AgentError as exc:
        return PlannerAnswer([], exc, exc.usage)
    text = result.output.get("text", "") if isinstance(result.output, dict) else str(result.output)
    try:
        specs = parse_plan_json(text)
        validate(specs, known_agents=known_agents())
    except PlanInvalid as exc:
        return PlannerAnswer([], exc, result.usage)
    return PlannerAnswer(specs, None, result.usage)
