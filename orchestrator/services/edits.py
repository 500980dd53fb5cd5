"""Editing a running plan, and re-running it from a step (issue 10, items 4 and 5).

Both run in one transaction under the plan lock, like every decision about what runs next, and end with a whole
``scheduling.advance`` (the structure changed: whatever is ready now runs, whatever can never run is cancelled).

Edit (``plan_edit``): add steps, remove or change pending ones. Only ``pending`` steps (waiting for their
dependencies) can be removed or changed: queued, running, waiting (for an approval) and finished ones are
immutable. The whole edit is validated against the plan as it is under the lock, as a new plan is (the step
schema at the edge; here: known agents, unique keys, dependencies that exist, no cycle, ORCH_MAX_STEPS, the
hard caps), then written whole, or refused whole with nothing written.

Concurrency (which of two racing writers wins, and what the loser gets):

* Two edits: the plan lock serialises them. Each one is validated against the plan as the other left it. A
  client that wants "nothing changed since I looked" sends the plan's ``version`` (``If-Match``); every edit,
  growth and re-run adds one to it, so the second of two edits made against the same version gets 409
  ``plan.edit_conflict`` and nothing of it is written.
* An edit and a step's end: the step rows the edit touches are locked (plan, then steps: the lock order) and
  their status read under the lock. If the step already left ``pending`` (its dependency ended and it was
  queued), the edit gets 409 ``step.not_pending``; if the edit came first, the step runs as edited.

Re-run (``step_rerun``): the step (with a new input, if given) and every step downstream of it go back to
``pending`` and run again as new attempts; nothing else is called again. What the step and its downstream
spawned when they succeeded is removed (their new outputs spawn again). The earlier attempts stay in the
event record. A finished plan runs again. Refused (409 ``step.rerun_busy``) while any of those steps is
queued, running or waiting for an approval, and for a step that has not run (``step.not_finished``).

Approval policies and budgets apply to added and edited steps when they become ready (budgets.gate), exactly
as to planned ones; what would pass a hard cap is refused at once (``budget.cap_exceeded``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F

from agents.api import agent_get
from common.errors import Conflict, NotFound
from orchestrator import planning
from orchestrator.editing import EditModel, StepChangeModel, step_input
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.planning import PlanInvalid, StepSpec
from orchestrator.services import growth
from orchestrator.services.budgets import cap_check
from orchestrator.services.plans import _risk, _steps_add
from orchestrator.services.resume import _RESET
from orchestrator.services.scheduling import advance
from orchestrator.services.transitions import events_record, plan_locked, plan_transition, steps_transition
from orchestrator.states import PLAN_TERMINAL, STEP_TERMINAL, PlanStatus, StepStatus

_BUSY = (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.WAITING)


def _checked(plan: Plan, version: int | None, *, running_only: bool) -> None:
    if running_only and plan.status != PlanStatus.RUNNING:
        raise Conflict(f"only a running plan can be edited; this one is {plan.status}", code="plan.not_running")
    if plan.status == PlanStatus.PLANNING:
        raise Conflict("the planner has not written this plan's steps yet", code="plan.not_running")
    if version is not None and version != plan.version:
        raise Conflict(f"the plan changed since version {version} (it is at version {plan.version}): "
                       "read it again and redo the edit", code="plan.edit_conflict")


def _bump(plan: Plan) -> None:
    Plan.objects.filter(id=plan.id).update(version=F("version") + 1)
    plan.version += 1


def _spec_of(step: Step) -> StepSpec:
    return StepSpec(key=step.key, agent=step.agent, input=step.input, depends_on=tuple(step.depends_on),
                    risk=step.risk, approval=step.approval_requested, fan_out=step.fan_out, replan=step.replan)


def _changed(step: Step, change: StepChangeModel) -> StepSpec:
    given = change.given()
    spec = _spec_of(step)
    if "agent" in given:
        spec = replace(spec, agent=given["agent"])
    if "input" in given:
        spec = replace(spec, input=step_input(given["input"] or {}))
    if "depends_on" in given:
        spec = replace(spec, depends_on=tuple(dict.fromkeys(given["depends_on"] or [])))
    if given.get("risk") is not None:  # a new agent's own risk is added by _risk; never lowered below the plan's
        spec = replace(spec, risk=given["risk"])
    if given.get("approval") is not None:
        spec = replace(spec, approval=given["approval"])
    if "fan_out" in given:
        spec = replace(spec, fan_out=given["fan_out"].model_dump() if given["fan_out"] else None)
    if given.get("replan") is not None:
        spec = replace(spec, replan=given["replan"])
    return spec


def _describe(spec: StepSpec) -> dict[str, Any]:
    return {"agent": spec.agent, "input": spec.input, "depends_on": list(spec.depends_on), "risk": spec.risk,
            "approval": spec.approval, "fan_out": spec.fan_out, "replan": spec.replan}


def _locked_pending(plan: Plan, keys: set[str]) -> dict[str, Step]:
    """The named steps, their rows locked (after the plan's: the lock order). Raises NotFound for a key the
    plan does not have, Conflict(step.not_pending) for a step that is no longer pending."""
    if not keys:
        return {}
    rows = {s.key: s for s in Step.objects.select_for_update().filter(plan=plan, key__in=keys).order_by("key")}
    for key in sorted(keys):
        if key not in rows:
            raise NotFound(f"the plan has no step {key!r}", code="step.not_found")
        if rows[key].status != StepStatus.PENDING:
            raise Conflict(f"step {key!r} is {rows[key].status}: only a pending step can be changed or removed",
                           code="step.not_pending")
    return rows


def plan_edit(*, plan_id: uuid.UUID, edit: EditModel, actor: User | None = None,
              version: int | None = None) -> Plan:
    """Apply an edit (editing.EditModel, parsed at the edge) to a running plan, whole or not at all. Raises
    Conflict (plan.not_running, plan.edit_conflict, step.not_pending, budget.cap_exceeded), NotFound
    (step.not_found), PlanInvalid (plan.unknown_agent, plan.cycle, plan.unknown_dependency,
    plan.duplicate_step, plan.too_many_steps, plan.step_in_use)."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        _checked(plan, version, running_only=True)
        touched = _locked_pending(plan, set(edit.remove) | set(edit.change))
        removed = set(edit.remove)
        changed = [_changed(touched[key], change) for key, change in edit.change.items() if key not in removed]
        added = [model.spec() for model in edit.add]
        kept = {key: tuple(deps) for key, deps in Step.objects.filter(plan=plan).values_list("key", "depends_on")
                if key not in removed and key not in edit.change}
        for key, deps in sorted(kept.items()):
            if used := sorted(set(deps) & removed):
                raise PlanInvalid(f"step {key!r} depends on {', '.join(used)}: change its depends_on in the same "
                                  "edit, or remove it too", code="plan.step_in_use")
        new = changed + added
        if new:
            planning.validate(new, known_agents=planning.known_agents(), existing=kept)
            cap_check(plan, new)
        Step.objects.filter(id__in=[touched[key].id for key in removed]).delete()
        for spec in changed:
            agent = agent_get(spec.agent)
            Step.objects.filter(id=touched[spec.key].id).update(
                agent=spec.agent, input=spec.input, depends_on=list(spec.depends_on), risk=_risk(spec),
                approval_requested=spec.approval, fan_out=spec.fan_out, replan=spec.replan,
                grows=spec.fan_out is not None or spec.replan or spec.key in growth.trigger_steps(plan.template),
                timeout=agent.timeout, deadline=agent.deadline)
        if added:
            _steps_add(plan, added)
        if any(spec.fan_out or spec.replan for spec in changed) and not plan.has_fan_out:
            Plan.objects.filter(id=plan.id).update(has_fan_out=True)
            plan.has_fan_out = True
        _bump(plan)
        items: list[tuple[str, str, dict[str, Any]]] = [("plan.edited", "", {
            "version": plan.version, "added": [s.key for s in added], "removed": sorted(removed),
            "changed": [s.key for s in changed]})]
        items += [("step.removed", key, {"was": _describe(_spec_of(touched[key]))}) for key in sorted(removed)]
        items += [("step.changed", s.key, {"was": _describe(_spec_of(touched[s.key])), "now": _describe(s)})
                  for s in changed]
        items += [("step.added", s.key, _describe(s)) for s in added]
        events_record(plan_id=plan.id, items=items, actor=actor)
        advance(plan)
    return plan


# --- re-run from a step ---------------------------------------------------------------------------------


def _downstream(graph: dict[str, list[str]], key: str) -> set[str]:
    """``key`` and every step that depends on it, directly or not."""
    dependents: dict[str, set[str]] = {}
    for step, deps in graph.items():
        for dep in deps:
            dependents.setdefault(dep, set()).add(step)
    found, todo = {key}, [key]
    while todo:
        for step in dependents.get(todo.pop(), ()):
            if step not in found:
                found.add(step)
                todo.append(step)
    return found


def _spawned_by(plan: Plan, keys: set[str]) -> set[str]:
    """What the given steps' successes added (plan.grown events), and what those added in turn."""
    grown: dict[str, set[str]] = {}
    for after, data in PlanEvent.objects.filter(plan=plan, type="plan.grown").values_list("step_key", "data"):
        grown.setdefault(after, set()).update(data.get("steps", []))
    found: set[str] = set()
    todo = [key for key in keys if key in grown]
    while todo:
        for step in grown.get(todo.pop(), set()) - found:
            found.add(step)
            todo.append(step)
    return found


def step_rerun(*, plan_id: uuid.UUID, key: str, new_input: dict[str, Any] | str | None = None,
               actor: User | None = None, version: int | None = None) -> Plan:
    """Run a step again (with ``new_input`` if given) and everything downstream of it; nothing else runs
    again. Raises NotFound (step.not_found), Conflict (plan.not_running: still planning, plan.edit_conflict,
    step.not_finished, step.rerun_busy)."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        _checked(plan, version, running_only=False)
        graph = {k: list(deps) for k, deps in Step.objects.filter(plan=plan).values_list("key", "depends_on")}
        if key not in graph:
            raise NotFound(f"the plan has no step {key!r}", code="step.not_found")
        downstream = _downstream(graph, key)
        spawned = _spawned_by(plan, downstream) - {key}
        rows = {s.key: s for s in Step.objects.select_for_update().filter(plan=plan, key__in=downstream | spawned)
                .order_by("key")}
        if rows[key].status not in STEP_TERMINAL:
            raise Conflict(f"step {key!r} is {rows[key].status}; only a finished step can be re-run",
                           code="step.not_finished")
        if busy := sorted(k for k, s in rows.items() if s.status in _BUSY):
            raise Conflict(f"steps {', '.join(busy)} downstream of {key!r} are still queued, running or waiting",
                           code="step.rerun_busy")
        # What they spawned goes (their new outputs spawn it again); so do the joins it added to dependents.
        Step.objects.filter(plan=plan, key__in=spawned).delete()
        if spawned:
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {Step._meta.db_table} SET depends_on = ARRAY(SELECT d FROM "
                               "unnest(depends_on) AS d WHERE NOT d = ANY(%s)) "
                               "WHERE plan_id = %s AND depends_on && %s::varchar[]",
                               [sorted(spawned), plan.id, sorted(spawned)])
        again = [s for k, s in rows.items() if k not in spawned and s.status in STEP_TERMINAL]
        fields = {**_RESET, "usage": None, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0,
                  "estimated_tokens": 0, "estimated_cost": 0}
        data = {"from": key}
        first = dict(fields, input=step_input(new_input)) if new_input is not None else fields
        steps_transition(step_ids=[rows[key].id], sources=list(STEP_TERMINAL), to=StepStatus.PENDING,
                         event="step.rerun", fields=first, actor=actor,
                         event_data={**data, "input_changed": new_input is not None})
        steps_transition(step_ids=[s.id for s in again if s.key != key], sources=list(STEP_TERMINAL),
                         to=StepStatus.PENDING, event="step.rerun", fields=fields, event_data=data, actor=actor)
        Step.objects.filter(id__in=[s.id for s in again]).update(
            max_attempts=F("attempt") + settings.ORCH_STEP_MAX_ATTEMPTS)
        _bump(plan)
        events_record(plan_id=plan.id, actor=actor, items=[("plan.rerun", key, {
            "version": plan.version, "steps": sorted(s.key for s in again), "removed": sorted(spawned),
            "input_changed": new_input is not None})])
        if plan.status in PLAN_TERMINAL:
            plan_transition(plan, PlanStatus.RUNNING, actor=actor, error_code="", error_message="", result=None,
                            finished_at=None, data={"rerun": key})
        advance(plan)
    return plan
