"""Creating, planning, cancelling plans, and resuming steps that waited for people."""

from __future__ import annotations

import logging
import time
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from agents.api import agent_get
from approvals import api as approvals
from common.bulk import copy_insert
from common.errors import Conflict
from orchestrator import experimenting, planning
from orchestrator.models import Plan, Step, StepSlot
from orchestrator.planning import StepSpec
from orchestrator.services import growth, leases, readiness
from orchestrator.services.budgets import totals_add
from orchestrator.services.dispatch import dispatch_on_commit, planner_on_commit
from orchestrator.services.durable import durably
from orchestrator.services.scheduling import advance
from orchestrator.services.transitions import events_record, plan_locked, plan_transition, steps_transition
from orchestrator.states import PLAN_TERMINAL, STEP_TERMINAL, PlanStatus, StepStatus
from organisations.api import tenancy_of

log = logging.getLogger("orchestrator")

RISK_LEVELS = ("low", "medium", "high")


def _risk(spec: StepSpec) -> str:
    """A step is as risky as its agent says (agents.yaml ``risk``), or more if the plan says so."""
    agent_risk = str(agent_get(spec.agent).options.get("risk", "low"))
    return max(agent_risk, spec.risk, key=lambda r: RISK_LEVELS.index(r) if r in RISK_LEVELS else 0)


# Steps a plan adds from which it checks whether the steps table's statistics still describe it.
STATISTICS_CHECK_FROM = 100


def _statistics_follow(added: int) -> None:
    """Have the steps and slots tables analyzed once this transaction commits, when it adds more steps than
    their statistics count (``pg_class.reltuples``; -1 before the first ANALYZE): it more than doubles them.

    A worker's connection plans each hot statement once (common/prepared.py). Planned while the table had a
    few pages, some plans read it whole, and the connection keeps them while it grows, until an ANALYZE makes
    every connection plan again; autovacuum's comes a minute or more later. Measured on a new database: its
    first 5,000-step plan ran 19.2 s, 12.2 s with this. Rare by construction: each ANALYZE at least doubles
    the count the next must pass. One that fails costs only the plans it would have mended: it is logged."""
    if added < STATISTICS_CHECK_FROM:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Step._meta.db_table])
        (counted,) = cursor.fetchone()
    if counted < added:
        transaction.on_commit(_statistics_analyze, robust=True)


def _statistics_analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Step._meta.db_table}, {StepSlot._meta.db_table}")


def _steps_add(plan: Plan, specs: list[StepSpec]) -> list[Step]:
    _statistics_follow(len(specs))
    agents = {spec.agent: agent_get(spec.agent) for spec in specs}
    if any(spec.fan_out or spec.replan for spec in specs) and not plan.has_fan_out:  # issue 10 (growth.py)
        plan.has_fan_out = True
        Plan.objects.filter(id=plan.id).update(has_fan_out=True)
    triggered = growth.trigger_steps(plan.template)
    # The counts of new steps among themselves; a plan that already has steps (growth) recomputes them all.
    depends_on = {spec.key: spec.depends_on for spec in specs}
    slots = readiness.slots_of(depends_on)  # a wide step's counters (readiness.py)
    counts = readiness.counts_of(depends_on, slots=slots)
    ranks = readiness.ranks_of({key: dependents for key, (dependents, _) in counts.items()})
    readiness.slots_add(plan.id, slots)
    return copy_insert([
        Step(plan=plan, key=spec.key, agent=spec.agent, input=spec.input, depends_on=list(spec.depends_on),
             risk=_risk(spec), approval_requested=spec.approval, fan_out=spec.fan_out, replan=spec.replan,
             grows=spec.fan_out is not None or spec.replan or spec.key in triggered,
             dependents=counts[spec.key][0], waiting_on=counts[spec.key][1], rank=ranks.get(spec.key, 1),
             timeout=agents[spec.agent].timeout, deadline=agents[spec.agent].deadline,
             max_attempts=settings.ORCH_STEP_MAX_ATTEMPTS)
        for spec in specs
    ])


def _start(plan: Plan, specs: list[StepSpec]) -> None:
    """Add a plan's first steps and queue (or gate) its roots. A plan still ``planning`` (the LLM planner
    answered) moves to running here; one created with its steps was created running."""
    added = _steps_add(plan, specs)
    if plan.status == PlanStatus.PLANNING:
        plan_transition(plan, PlanStatus.RUNNING, data={"steps": len(specs)})
    roots = {step.id: step for step in added if step.waiting_on == 0}  # nothing has ended yet
    advance(plan, freed=list(roots), added=roots)


def plan_create(*, owner: User, request: str, template: str = "",
                inputs: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None,
                budget_tokens: int | None = None, budget_cost: Decimal | None = None,
                cap_tokens: int | None = None, cap_cost: Decimal | None = None,
                max_replans: int | None = None) -> Plan:
    """Create a plan from a template, from explicit steps, or (neither given) by the LLM planner.

    Budgets (``budget_*``) make a step that would exceed them wait for approval; caps (``cap_*``) refuse it.
    ``max_replans``: how many times the planner may extend the plan while it runs (ORCH_MAX_REPLANS).

    Template and explicit plans are validated whole before anything is stored (raises PlanInvalid);
    an LLM plan starts in ``planning`` and is validated by ``plan_generate``. Roots go out on commit.
    """
    inputs = dict(inputs or {})
    variant = experimenting.plan_variant(owner=owner, template=template)  # experiments: a variant, maybe
    template = variant.template if variant is not None else template  # experiments: may swap the template
    specs: list[StepSpec] | None = None
    if template:
        specs, inputs = planning.template_plan(template, request=request, inputs=inputs)
    elif steps is not None:
        specs = planning.render(planning.parse_steps(steps), inputs)
        planning.validate(specs, known_agents=planning.known_agents())
    organisation_id = tenancy_of(owner).organisation_id  # the tenant owns the plan (a user's first use joins one)
    # A plan given its steps starts as it is created: created running, its two events in one insert.
    now, planned = timezone.now(), specs is None
    with transaction.atomic():
        plan, = copy_insert([Plan(owner=owner, organisation_id=organisation_id, request=request, template=template,
                                   inputs=inputs, budget_tokens=budget_tokens, budget_cost=budget_cost,
                                   cap_tokens=cap_tokens, cap_cost=cap_cost,
                                   max_replans=settings.ORCH_MAX_REPLANS if max_replans is None else max_replans,
                                   status=PlanStatus.PLANNING if planned else PlanStatus.RUNNING,
                                   started_at=None if planned else now,
                                   planning_attempt=1 if planned else 0, planning_queued_at=now if planned else None)])
        created = [("plan.created", "", {"template": template})]
        events_record(plan_id=plan.id, actor=owner, items=created if planned else [
            *created, ("plan.started", "", {"steps": len(specs or ())})])
        specs = experimenting.plan_assign(variant, plan=plan, specs=specs)  # experiments: record, swap agents
        if specs is None:
            planner_on_commit(plan.id, 1)
        else:
            _start(plan, specs)
    return plan


# --- the LLM planner, claimed like a step ----------------------------------------------------------------


def _planning_claim(plan_id: uuid.UUID, attempt: int, worker: str) -> Plan | None:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Plan._meta.db_table} SET planning_lease_expires_at = %s, planning_worker = %s, "
            "planning_deadline_at = %s::timestamptz + make_interval(secs => %s) "
            "WHERE id = %s AND status = 'planning' AND planning_attempt = %s AND planning_lease_expires_at IS NULL "
            "RETURNING id",
            [leases.lease_expires_at(), worker, now, _planner_deadline(), plan_id, attempt])
        claimed = cursor.fetchone() is not None
    return Plan.objects.get(id=plan_id) if claimed else None


def _planner_deadline() -> float:
    return agent_get(planning.PLANNER_AGENT).deadline


def plan_generate(*, plan_id: uuid.UUID, attempt: int, worker: str) -> None:
    """Run the LLM planner for a ``planning`` plan and start it, or fail it with the plan error's code.

    Claimed like a step (attempt and lease, renewed by the heartbeat): a duplicate or stale delivery is a
    no-op, and a planner slower than the reconciler's patience is not sent again. The planner's tokens
    count toward the plan's totals, whatever its answer. Calls an LLM outside any transaction."""
    retry_for = time.monotonic() + settings.ORCH_DB_RETRY_FOR
    try:
        plan = durably(lambda: _planning_claim(plan_id, attempt, worker), until=lambda: retry_for,
                       what="planner claim")
    finally:
        connection.close()
    if plan is None:
        log.info("orchestrator.plan.generate_noop", extra={"plan_id": str(plan_id), "attempt": attempt})
        return
    with leases.heartbeat.hold("plan", plan_id, attempt, seconds=_planner_deadline()) as lease:
        answer = planning.llm_plan(request=plan.request, plan_id=str(plan_id), attempt=attempt,
                                   deadline=lease.deadline)
        try:
            durably(lambda: _planned(plan_id, attempt, answer), until=lambda: lease.valid_until,
                    what="planner result")
        finally:
            connection.close()


def _planned(plan_id: uuid.UUID, attempt: int, answer: planning.PlannerAnswer) -> None:
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.planning_attempt == attempt and plan.status != PlanStatus.PLANNING:
            return  # this very answer was recorded already (a retried recording whose first try committed)
        if answer.usage is not None:
            totals_add(plan, tokens=answer.usage.total_tokens, cost=answer.usage.cost)
            events_record(plan_id=plan.id, items=[("plan.planner_usage", "", {
                "attempt": attempt, **answer.usage.as_dict()})])
        if plan.status != PlanStatus.PLANNING or plan.planning_attempt != attempt:
            return  # stale: another attempt owns the planning now (its tokens are counted above)
        plan.planning_lease_expires_at = None
        plan.save(update_fields=["planning_lease_expires_at"])
        if answer.error is not None:
            plan_transition(plan, PlanStatus.FAILED, error_code=answer.error.code,
                            error_message=answer.error.message, data=answer.error.as_dict())
        else:
            _start(plan, answer.specs)


# --- cancel, approvals ------------------------------------------------------------------------------------


def plan_cancel(*, plan_id: uuid.UUID, actor: User | None = None) -> Plan:
    """Cancel a plan and every step that has not ended. Raises Conflict if the plan has already ended.

    A step whose agent is running keeps running, but its result is discarded (its attempt is stale)."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status in PLAN_TERMINAL:
            raise Conflict(f"the plan has already {plan.status}", code="plan.finished")
        open_steps = list(Step.objects.filter(plan=plan).exclude(status__in=STEP_TERMINAL)
                          .values_list("id", flat=True))
        # Their approvals close after commit, in their own transaction (lock order: approval, then plan).
        transaction.on_commit(lambda: approvals.approvals_cancel(step_ids=open_steps))
        steps_transition(step_ids=open_steps, actor=actor,
                         sources=[StepStatus.PENDING, StepStatus.WAITING, StepStatus.QUEUED, StepStatus.RUNNING],
                         to=StepStatus.CANCELLED,
                         fields={"finished_at": timezone.now(), "error_code": "plan.cancelled",
                                 "error_message": "the plan was cancelled", "lease_expires_at": None})
        plan_transition(plan, PlanStatus.CANCELLED, actor=actor)
    return plan


def step_gate_resolved(resolution: approvals.Resolution) -> None:
    """The approval of a waiting step was decided (inside the deciding transaction): run the step, with
    the edited input if there is one, or end it rejected / failed; then advance its plan."""
    plan = plan_locked(resolution.plan_id)
    actor = resolution.actor
    data = {"approval_id": str(resolution.approval_id), "timed_out": resolution.timed_out}
    if resolution.status == "approved":
        fields: dict[str, Any] = {"queued_at": timezone.now(), "requeues": 0}
        if resolution.edited_input is not None:
            fields["input"] = resolution.edited_input
        moved = steps_transition(step_ids=[resolution.step_id], sources=[StepStatus.WAITING], to=StepStatus.QUEUED,
                                 increment=("attempt",), fields=fields, event_data=data, actor=actor)
        dispatch_on_commit(moved)
    else:
        rejected = resolution.status == "rejected"
        code = "approval.rejected" if rejected else "approval.timed_out"
        message = resolution.comment or ("a person rejected the step" if rejected else "no decision in time")
        moved = steps_transition(step_ids=[resolution.step_id], sources=[StepStatus.WAITING],
                                 to=StepStatus.REJECTED if rejected else StepStatus.FAILED,
                                 fields={"finished_at": timezone.now(), "error_code": code,
                                         "error_message": message},
                                 event_data={**data, "code": code}, actor=actor)
    if moved and plan.status == PlanStatus.RUNNING:
        advance(plan)


def approval_event(plan_id: uuid.UUID, type_: str, step_key: str, data: dict[str, Any],
                   actor: User | None) -> None:
    """Where the approvals app records its events: the plan's event record (the audit trail)."""
    events_record(plan_id=plan_id, items=[(type_, step_key, data)], actor=actor)
