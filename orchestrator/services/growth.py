"""Plans that grow while they run (issue 10), decided in the transaction that records a step's success.

When a step succeeds, three things can add steps after it:

* the template's ``dynamic_rules`` whose trigger fires after it (orchestrator/dynamic.py);
* its output's ``spawn`` field: a list of steps in the plan's step shape (planning.StepModel);
* its ``fan_out``: one step per item of a list in its output (planning.FanOutModel), like LangGraph's Send.

A spawned step with no dependency depends on the step that spawned it. What a step spawns through ``spawn`` or
``fan_out`` is part of it: the steps that depended on it also wait for everything it spawned (the join).

Everything spawned is validated whole, exactly as a new plan is (schema, known agents, unique keys, no cycle,
ORCH_MAX_STEPS, ORCH_MAX_FANOUT), before anything is written. Then either all of it is added (one bulk insert
and a ``plan.grown`` event per source) or none of it: the triggering step fails with the refusal's code
(``plan.cycle``, ``plan.unknown_agent``, ``plan.too_many_steps``, ``spawn.fan_out_too_large``...), its output
kept, and a ``plan.spawn_refused`` event says what was refused. Approval policies and budgets apply to the
new steps when they become ready (budgets.gate), as to any step; what would pass a hard cap is refused at
once (``budget.cap_exceeded``: budgets.cap_check). The caller holds the plan lock.

Re-planning (plan-and-execute): a step with ``replan: true`` adds, when it succeeds, a step of the planner
agent (ORCH_REPLANNER_AGENT) keyed ``KEY-replan``, asked to extend the plan after it (planning.replan_input);
the steps that depended on it also wait for that one. The planner step's answer (a JSON plan) is then a spawn
of its own (source ``replan``), validated and added, or refused, like any. At most ``plan.max_replans``
planner steps per plan: past that, a ``plan.replan_limit`` event says so and the plan goes on without one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F

from common.errors import DomainError
from orchestrator import planning
from orchestrator.dynamic import ExpressionError, RuleModel, SpawnTaskModel, expression_eval
from orchestrator.models import Plan, Step
from orchestrator.planning import StepSpec
from orchestrator.services.budgets import CapExceeded, cap_check
from orchestrator.services.transitions import events_record
from orchestrator.states import StepStatus

log = logging.getLogger("orchestrator")


class SpawnRefused(DomainError):
    code = "spawn.refused"


@dataclass
class Growth:
    """What a step's success adds (``specs``, by source for the events), or why it adds nothing."""

    after: str
    batches: list[dict[str, Any]] = field(default_factory=list)  # {"source", "rule"?, "steps": [keys]}
    specs: list[StepSpec] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)  # keys the dependents of ``after`` must also wait for
    refused: SpawnRefused | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)  # plan.replan_limit, recorded with the growth

    def refusal_fields(self) -> dict[str, Any]:
        assert self.refused is not None
        return {"error_code": self.refused.code,
                "error_message": f"what it spawned was refused: {self.refused.message}"[:2000]}


@cache
def _template(name: str) -> planning.Template:
    return planning.template_load(name)


def _at(output: Any, path: str) -> Any:
    value = output
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SpawnRefused(f"its output has nothing at {path!r}", code="spawn.fan_out_not_list")
        value = value[part]
    return value


def _rule_specs(rule: RuleModel, *, after: str, existing: dict[str, str], inputs: dict[str, Any]) -> list[StepSpec]:
    """A rule's spawn tasks as steps: keys default to agent names, ``depends_on`` names keys or agents."""
    by_agent = {task.agent: task.step_key for task in rule.spawn_tasks}
    specs: list[StepSpec] = []
    previous: SpawnTaskModel | None = None
    for task in rule.spawn_tasks:
        deps: list[str] = []
        for name in task.depends_on:
            if name in by_agent.values() or name in existing:
                deps.append(name)
            elif name in by_agent:
                deps.append(by_agent[name])
            else:
                matches = [key for key, agent in existing.items() if agent == name]
                deps.append(matches[0] if len(matches) == 1 else name)  # validate() names a dangling one
        if not task.parallel and previous is not None:
            deps.append(previous.step_key)
        step_input = {"prompt": task.input} if isinstance(task.input, str) else dict(task.input)
        specs.append(StepSpec(key=task.step_key, agent=task.agent, input=step_input,
                              depends_on=tuple(dict.fromkeys(deps or [after])), risk=task.risk,
                              approval=task.approval))
        previous = task
    return planning.render(specs, inputs)


def _own_specs(step_key: str, fan_out: dict[str, Any] | None, output: Any) -> tuple[list[StepSpec], list[StepSpec]]:
    """What the step's own output asks for: its ``spawn`` field and its fan-out."""
    spawned: list[StepSpec] = []
    if isinstance(output, dict) and output.get("spawn") is not None:
        spawned = [spec if spec.depends_on else replace(spec, depends_on=(step_key,))
                   for spec in planning.parse_steps(output["spawn"])]
    fanned: list[StepSpec] = []
    if fan_out:
        items = _at(output, fan_out["over"])
        if not isinstance(items, list):
            raise SpawnRefused(f"{fan_out['over']!r} in its output is not a list", code="spawn.fan_out_not_list")
        if len(items) > settings.ORCH_MAX_FANOUT:
            raise SpawnRefused(f"it fans out over {len(items)} items; the limit is {settings.ORCH_MAX_FANOUT} "
                               "(ORCH_MAX_FANOUT)", code="spawn.fan_out_too_large")
        for index, item in enumerate(items, start=1):
            key = f"{step_key}-{index}"
            if not planning.KEY_PATTERN.match(key):
                raise SpawnRefused(f"the fan-out step key {key!r} is too long", code="plan.invalid_schema")
            fanned.append(StepSpec(key=key, agent=fan_out["agent"],
                                   input={**fan_out.get("input", {}), fan_out.get("input_key", "item"): item},
                                   depends_on=(step_key,)))
    return spawned, fanned


def trigger_steps(template: str) -> frozenset[str]:
    """The keys of the steps after which the template's triggers are judged (no query: templates are cached)."""
    try:
        return frozenset(t.after for t in _template(template).triggers.values()) if template else frozenset()
    except planning.PlanInvalid:
        return frozenset()


def _replanned(step_key: str, output: Any) -> list[StepSpec]:
    """The planner step's answer, a JSON plan (text), as steps after it. Raises PlanInvalid."""
    text = output.get("text", "") if isinstance(output, dict) else str(output)
    return [spec if spec.depends_on else replace(spec, depends_on=(step_key,))
            for spec in planning.parse_plan_json(text)]


def _replanner(plan: Plan, growth: Growth, step_key: str, agents: dict[str, str]) -> list[StepSpec]:
    """The planner step that extends the plan after ``step_key``, unless the plan has used its rounds."""
    rounds = Step.objects.filter(plan=plan, input__has_key="replan_of").count()
    if rounds >= plan.max_replans:
        growth.notes.append({"type": "plan.replan_limit", "rounds": rounds, "max_replans": plan.max_replans})
        return []
    key = f"{step_key}-replan"
    if not planning.KEY_PATTERN.match(key):
        raise SpawnRefused(f"the planner step key {key!r} is too long", code="plan.invalid_schema")
    return [StepSpec(key=key, agent=settings.ORCH_REPLANNER_AGENT, depends_on=(step_key,),
                     input=planning.replan_input(request=plan.request, after=step_key, existing=sorted(agents)))]


def prepare(plan: Plan, *, step_id: uuid.UUID, attempt: int, output: Any) -> Growth | None:
    """Under the plan lock, before the success is recorded: what this success adds, validated whole, or
    the refusal. None when it adds nothing (or the attempt is no longer running: the caller finds that)."""
    try:
        template = _template(plan.template) if plan.template else None
    except planning.PlanInvalid:  # the template's file is gone or broken since the plan started: no rules
        log.warning("orchestrator.growth.template_unavailable", extra={"template": plan.template})
        template = None
    spawns = isinstance(output, dict) and "spawn" in output
    if not (spawns or plan.has_fan_out or (template is not None and template.triggers)):
        return None  # the common case costs no query
    step = (Step.objects.filter(id=step_id, attempt=attempt, status=StepStatus.RUNNING)
            .values("key", "fan_out", "replan", "input__replan_of").first())
    if step is None:
        return None
    has_rules = template is not None and any(t.after == step["key"] for t in template.triggers.values())
    if not (has_rules or step["fan_out"] or spawns or step["replan"] or step["input__replan_of"]):
        return None
    growth = Growth(after=step["key"])
    rows = list(Step.objects.filter(plan=plan).values_list("key", "agent", "depends_on"))
    existing_agents = {key: agent for key, agent, _ in rows}
    try:
        if template is not None and has_rules:
            for name, trigger in template.triggers.items():
                if trigger.after != step["key"]:
                    continue
                try:
                    fired = expression_eval(trigger.when, output=output, inputs=plan.inputs)
                except ExpressionError as exc:
                    raise SpawnRefused(f"trigger {name!r}: {exc}", code="spawn.trigger_failed") from None
                for rule in (r for r in template.rules if r.trigger == name and fired):
                    specs = _rule_specs(rule, after=step["key"], existing=existing_agents, inputs=plan.inputs)
                    growth.batches.append({"source": "rule", "rule": name, "steps": [s.key for s in specs]})
                    growth.specs += specs
        spawned, fanned = _own_specs(step["key"], step["fan_out"], output)
        replanned = _replanned(step["key"], output) if step["input__replan_of"] else []
        replanner = _replanner(plan, growth, step["key"], existing_agents) if step["replan"] else []
        for source, specs in (("spawn", spawned), ("fan_out", fanned), ("replan", replanned),
                              ("replan_request", replanner)):
            if specs:
                growth.batches.append({"source": source, "steps": [s.key for s in specs]})
                growth.specs += specs
                growth.joined += [s.key for s in specs]
        if not growth.specs:
            return growth if growth.notes else None
        existing = {key: tuple(deps) + (tuple(growth.joined) if step["key"] in deps else ())
                    for key, _, deps in rows}
        planning.validate(growth.specs, known_agents=planning.known_agents(), existing=existing)
        cap_check(plan, growth.specs)
    except CapExceeded as exc:
        growth.refused = SpawnRefused(exc.message, code=exc.code)
    except (SpawnRefused, planning.PlanInvalid) as exc:
        growth.refused = exc if isinstance(exc, SpawnRefused) else SpawnRefused(exc.message, code=exc.code)
    return growth


def apply(plan: Plan, growth: Growth) -> None:
    """Record the growth (the step's success is recorded): add every spawned step and make the triggering
    step's dependents wait for what it spawned; or record the refusal. One transaction, under the plan lock."""
    if growth.refused is not None:
        events_record(plan_id=plan.id, items=[("plan.spawn_refused", growth.after, {
            "code": growth.refused.code, "message": growth.refused.message, "batches": growth.batches})])
        return
    events_record(plan_id=plan.id, items=[(note.pop("type"), growth.after, note) for note in growth.notes])
    if not growth.specs:
        return
    from orchestrator.services.plans import _steps_add  # plans imports steps, which imports this module

    _steps_add(plan, growth.specs)
    if growth.joined:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {Step._meta.db_table} SET depends_on = depends_on || %s::varchar[] "
                           "WHERE plan_id = %s AND status = 'pending' AND %s = ANY(depends_on) AND NOT key = ANY(%s)",
                           [growth.joined, plan.id, growth.after, growth.joined])
    Plan.objects.filter(id=plan.id).update(version=F("version") + 1)  # its structure changed (services/edits.py)
    plan.version += 1
    events_record(plan_id=plan.id, items=[("plan.grown", growth.after, batch) for batch in growth.batches])
