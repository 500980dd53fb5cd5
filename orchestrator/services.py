"""Every write to plans and steps.

Concurrency rules (read these before changing anything here):

1. ``steps_transition`` is the only writer of ``Step.status``. It is one statement: a conditional UPDATE
   that moves a step only from a status the state machine allows (``states.STEP_TRANSITIONS``) and, when
   ``attempt`` is given, only if that attempt is still current, and that appends the step's event. A
   duplicate or stale request matches no row and is a logged no-op: that makes task delivery idempotent.
2. Whatever decides what runs next (a step ending, an approval resolved, cancel, the reconciler) holds the
   plan's row lock (``SELECT ... FOR NO KEY UPDATE``), so two dependencies finishing at once cannot both
   miss that their join is ready, the last two steps cannot both miss that the plan is done, and budget
   checks see every reservation. (NO KEY: the claim's event row references the plan and takes FOR KEY
   SHARE on it, which must not wait for a step's end.) The claim (queued -> running) needs no plan lock:
   its conditional UPDATE races only with cancel, and the step's row lock decides that race.
3. Lock order: approval, then plan, then the owner's budget row, then steps. Messages go out after
   commit (``transaction.on_commit``); if one is lost, the reconciler sends it again, and the attempt
   number makes the copy harmless.
4. No transaction is open while an agent runs: claim (one statement), call, record in a short transaction.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from celery import current_app, group
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone
from psycopg.types.json import Jsonb

from agents.api import AgentError, Estimate, Totals, agent_estimate, agent_get, budget_check
from approvals import api as approvals
from common.errors import Conflict, NotFound
from orchestrator import events, experimenting, planning
from orchestrator.models import Plan, PlanEvent, Spending, Step, UserBudget
from orchestrator.planning import PlanInvalid, StepSpec
from orchestrator.states import (
    PLAN_TERMINAL,
    STEP_ACTIVE,
    STEP_TERMINAL,
    STEP_UNSUCCESSFUL,
    PlanStatus,
    StepStatus,
    check_plan_transition,
    step_sources,
)

log = logging.getLogger("orchestrator")

# Usage keys that say how an agent call was served (issue 14; agents.base.Usage.marks), copied into the
# step.succeeded event.
USAGE_MARKS = ("cached", "routed", "saved_cost", "variant")

RUN_STEP_TASK = "orchestrator.run_step"
PLAN_GENERATE_TASK = "orchestrator.plan_generate"

EVENT_FOR_STATUS = {
    StepStatus.QUEUED: "step.queued",
    StepStatus.RUNNING: "step.started",
    StepStatus.SUCCEEDED: "step.succeeded",
    StepStatus.FAILED: "step.failed",
    StepStatus.REJECTED: "step.rejected",
    StepStatus.CANCELLED: "step.cancelled",
    StepStatus.WAITING: "step.waiting",
}


@dataclass(frozen=True)
class Moved:
    """A step that ``steps_transition`` moved, with its attempt after the move."""

    id: uuid.UUID
    plan_id: uuid.UUID
    key: str
    agent: str
    attempt: int
    input: dict[str, Any]
    depends_on: list[str]
    timeout: float


@dataclass(frozen=True)
class Sql:
    """A column value computed by the database, e.g. the lease from the step's own timeout."""

    expression: str
    params: tuple[Any, ...] = ()


# --- events -------------------------------------------------------------------------------------------


def events_record(*, plan_id: uuid.UUID, items: list[tuple[str, str, dict[str, Any]]],
                  actor: User | None = None) -> None:
    """Append (type, step_key, data) events to the plan's record. Runs in the caller's transaction.

    Once that transaction commits, the events go out to live subscribers (``orchestrator.events``): never
    before (a rolled-back event is never seen) and never raising (a client that missed the announcement
    resumes from these rows).
    """
    now = timezone.now()
    stored = PlanEvent.objects.bulk_create(
        PlanEvent(plan_id=plan_id, type=type_, step_key=key, data=data, actor=actor, created_at=now)
        for type_, key, data in items
    )
    events.publish_on_commit(stored)


# --- the step state machine's only writer ---------------------------------------------------------------


def _sql_value(value: Any) -> tuple[str, tuple[Any, ...]]:
    if isinstance(value, Sql):
        return value.expression, value.params
    if isinstance(value, dict | list):
        return "%s", (Jsonb(value),)
    return "%s", (value,)


def steps_transition(*, step_ids: list[uuid.UUID], to: StepStatus, attempt: int | None = None,
                     bump_attempt: bool = False, fields: dict[str, Any] | None = None,
                     event: str | None = None, event_data: dict[str, Any] | None = None,
                     actor: User | None = None) -> list[Moved]:
    """Move the given steps to ``to`` where the state machine allows it; return those that moved.

    One statement: a conditional UPDATE ... RETURNING whose rows also append one event each. Steps in
    another status, or whose attempt is not ``attempt`` (when given), are left alone. The events go out to
    live subscribers after commit (at once in autocommit, where the statement is its own transaction).
    """
    if not step_ids:
        return []
    sets: list[str] = ["status = %s"]
    params: list[Any] = [str(to)]
    for column, value in (fields or {}).items():
        expression, value_params = _sql_value(value)
        sets.append(f"{column} = {expression}")
        params.extend(value_params)
    if bump_attempt:
        sets.append("attempt = attempt + 1")
    where = "id = ANY(%s) AND status = ANY(%s)"
    params += [list(step_ids), step_sources(to)]
    if attempt is not None:
        where += " AND attempt = %s"
        params.append(attempt)
    event_type, extra, now = event or EVENT_FOR_STATUS[to], event_data or {}, timezone.now()
    params += [event_type, Jsonb(extra), actor.pk if actor else None, now]
    sql = f"""
        WITH moved AS (
            UPDATE {Step._meta.db_table} SET {", ".join(sets)} WHERE {where}
            RETURNING id, plan_id, key, agent, attempt, input, depends_on, timeout
        ), recorded AS (
            INSERT INTO {PlanEvent._meta.db_table} (plan_id, step_key, type, data, actor_id, created_at)
            SELECT plan_id, key, %s, jsonb_build_object('attempt', attempt, 'agent', agent) || %s::jsonb, %s, %s
            FROM moved
            RETURNING id, plan_id, step_key
        )
        SELECT moved.*, recorded.id FROM moved JOIN recorded
            ON recorded.plan_id = moved.plan_id AND recorded.step_key = moved.key"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # Django has psycopg hand jsonb back as text (JSONField decodes it); so does this raw cursor.
    moved = [Moved(id=row[0], plan_id=row[1], key=row[2], agent=row[3], attempt=row[4], input=json.loads(row[5]),
                   depends_on=row[6], timeout=row[7]) for row in rows]
    events.publish_on_commit(
        PlanEvent(id=row[-1], plan_id=step.plan_id, step_key=step.key, type=event_type, actor=actor,
                  data={"attempt": step.attempt, "agent": step.agent, **extra}, created_at=now)
        for step, row in zip(moved, rows, strict=True)
    )
    return moved


def _send_steps(moved: list[Moved]) -> None:
    """Publish one run_step message per step (a Celery group when there are several)."""
    if not moved:
        return
    signatures = [
        current_app.signature(RUN_STEP_TASK, args=(str(step.id), step.attempt), queue=agent_get(step.agent).queue)
        for step in moved
    ]
    if len(signatures) == 1:
        signatures[0].apply_async()
    else:
        group(signatures).apply_async()
    log.info("orchestrator.steps.dispatched", extra={"plan_id": str(moved[0].plan_id), "count": len(moved)})


def _dispatch_on_commit(moved: list[Moved]) -> None:
    """Send the steps' messages once the transaction that queued them commits. If the broker is down the
    send fails here, logged, without undoing anything: the steps stay queued and the reconciler sends them
    again (ORCH_REQUEUE_AFTER)."""
    if moved:
        transaction.on_commit(lambda: _send_steps(moved), robust=True)


# --- plans --------------------------------------------------------------------------------------------


def _plan_locked(plan_id: uuid.UUID) -> Plan:
    try:
        # FOR NO KEY UPDATE: event rows inserted by claims reference the plan (FOR KEY SHARE), and must not
        # queue behind a step's end.
        return Plan.objects.select_for_update(no_key=True).get(id=plan_id)
    except Plan.DoesNotExist:
        raise NotFound(f"no plan {plan_id}") from None


def _plan_transition(plan: Plan, to: PlanStatus, *, data: dict[str, Any] | None = None,
                     actor: User | None = None, **fields: Any) -> None:
    """The only writer of ``Plan.status``; the caller holds the plan's row lock."""
    check_plan_transition(plan.status, to)
    plan.status = to
    now = timezone.now()
    if to == PlanStatus.RUNNING:
        plan.started_at = now
    if to in PLAN_TERMINAL:
        plan.finished_at = now
    for name, value in fields.items():
        setattr(plan, name, value)
    plan.save(update_fields=["status", "started_at", "finished_at", *fields])
    event = {"running": "plan.started", "succeeded": "plan.completed"}.get(str(to), f"plan.{to}")
    events_record(plan_id=plan.id, items=[(event, "", data or {})], actor=actor)


def _steps_add(plan: Plan, specs: list[StepSpec]) -> None:
    Step.objects.bulk_create(
        Step(plan=plan, key=spec.key, agent=spec.agent, input=spec.input, depends_on=list(spec.depends_on),
             risk=_risk(spec), approval_requested=spec.approval, timeout=agent_get(spec.agent).timeout,
             max_attempts=settings.ORCH_STEP_MAX_ATTEMPTS)
        for spec in specs
    )


RISK_LEVELS = ("low", "medium", "high")


def _risk(spec: StepSpec) -> str:
    """A step is as risky as its agent says (agents.yaml ``risk``), or more if the plan says so."""
    agent_risk = str(agent_get(spec.agent).options.get("risk", "low"))
    return max(agent_risk, spec.risk, key=lambda r: RISK_LEVELS.index(r) if r in RISK_LEVELS else 0)


def plan_create(*, owner: User, request: str, template: str = "",
                inputs: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None,
                budget_tokens: int | None = None, budget_cost: Decimal | None = None,
                cap_tokens: int | None = None, cap_cost: Decimal | None = None) -> Plan:
    """Create a plan from a template, from explicit steps, or (neither given) by the LLM planner.

    Budgets (``budget_*``) make a step that would exceed them wait for approval; caps (``cap_*``) refuse it.

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
    with transaction.atomic():
        plan = Plan.objects.create(owner=owner, request=request, template=template, inputs=inputs,
                                   budget_tokens=budget_tokens, budget_cost=budget_cost, cap_tokens=cap_tokens,
                                   cap_cost=cap_cost)
        events_record(plan_id=plan.id, items=[("plan.created", "", {"template": template})], actor=owner)
        specs = experimenting.plan_assign(variant, plan=plan, specs=specs)  # experiments: record, swap agents
        if specs is None:
            transaction.on_commit(lambda: current_app.send_task(PLAN_GENERATE_TASK, args=(str(plan.id),)),
                                  robust=True)  # lost: the reconciler sends it again
        else:
            _start(plan, specs)
    return plan


def _start(plan: Plan, specs: list[StepSpec]) -> None:
    _steps_add(plan, specs)
    _plan_transition(plan, PlanStatus.RUNNING, data={"steps": len(specs)})
    _advance(plan)


def plan_generate(*, plan_id: uuid.UUID) -> None:
    """Run the LLM planner for a ``planning`` plan and start it, or fail it with the plan error's code.

    Calls an LLM outside any transaction. A duplicate delivery finds the plan no longer planning.
    """
    plan = Plan.objects.filter(id=plan_id, status=PlanStatus.PLANNING).first()
    if plan is None:
        log.info("orchestrator.plan.generate_noop", extra={"plan_id": str(plan_id)})
        return
    try:
        specs = planning.llm_plan(request=plan.request, plan_id=str(plan.id), step_id=str(plan.id))
        error: AgentError | PlanInvalid | None = None
    except (PlanInvalid, AgentError) as exc:
        error = exc
    with transaction.atomic():
        plan = _plan_locked(plan_id)
        if plan.status != PlanStatus.PLANNING:
            return
        if error is not None:
            _plan_transition(plan, PlanStatus.FAILED, error_code=error.code, error_message=error.message,
                             data=error.as_dict())
        else:
            _start(plan, specs)


def _finish(plan: Plan) -> None:
    failed = (Step.objects.filter(plan=plan, status__in=[StepStatus.FAILED, StepStatus.REJECTED])
              .order_by("finished_at").values("key", "error_code", "error_message").first())
    if failed:
        message = f"step {failed['key']!r} failed: {failed['error_message']}"
        _plan_transition(plan, PlanStatus.FAILED, error_code=failed["error_code"], error_message=message,
                         data={"step": failed["key"], "code": failed["error_code"]})
        return
    keys_and_deps = list(Step.objects.filter(plan=plan).values_list("key", "depends_on"))
    dependencies = set().union(*(deps for _, deps in keys_and_deps))
    sinks = [key for key, _ in keys_and_deps if key not in dependencies]
    outputs = dict(Step.objects.filter(plan=plan, key__in=sinks).values_list("key", "output"))
    result = outputs[sinks[0]] if len(sinks) == 1 else outputs
    _plan_transition(plan, PlanStatus.SUCCEEDED, result=result)


def _advance_after_success(plan: Plan, key: str) -> None:
    """Under the plan lock, after step ``key`` succeeded: start the dependents it completed, or finish the
    plan if nothing is left. One query over those dependents (not the whole plan): the common path."""
    step = Step._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT ARRAY(
                SELECT s.id FROM {step} s
                WHERE s.plan_id = %(plan)s AND s.status = 'pending' AND %(key)s = ANY(s.depends_on)
                  AND NOT EXISTS (SELECT 1 FROM {step} d WHERE d.plan_id = s.plan_id
                                  AND d.key = ANY(s.depends_on) AND d.status <> 'succeeded')),
                EXISTS (SELECT 1 FROM {step} o WHERE o.plan_id = %(plan)s AND o.status <> ALL(%(ended)s))""",
                       {"plan": plan.id, "key": key, "ended": [str(status) for status in STEP_TERMINAL]})
        ready, unfinished = cursor.fetchone()
    if ready:
        ready, refused = _gate(plan, ready)
        _dispatch_on_commit(steps_transition(step_ids=ready, to=StepStatus.QUEUED, bump_attempt=True,
                                             fields={"queued_at": timezone.now()}))
        if refused:
            _advance(plan)
    elif not unfinished:
        _finish(plan)


def _advance(plan: Plan) -> None:
    """Under the plan lock: cancel steps that can never run, start (or gate) the ready ones, and finish a
    settled plan. A ready step that policy (or the plan) gates waits for an approval instead of running;
    only the steps that depend on it wait with it."""
    rows = list(Step.objects.filter(plan=plan).values_list("id", "key", "status", "depends_on"))
    status = {key: st for _, key, st, _ in rows}
    doomed: list[uuid.UUID] = []
    changed = True
    while changed:  # a failed step dooms its dependents, their dependents, and so on
        changed = False
        for step_id, key, _, deps in rows:
            if status[key] == StepStatus.PENDING and any(status[d] in STEP_UNSUCCESSFUL for d in deps):
                status[key] = StepStatus.CANCELLED
                doomed.append(step_id)
                changed = True
    now = timezone.now()
    steps_transition(step_ids=doomed, to=StepStatus.CANCELLED,
                     fields={"finished_at": now, "error_code": "step.upstream_failed",
                             "error_message": "a step it depends on did not succeed"})
    ready = [step_id for step_id, key, _, deps in rows
             if status[key] == StepStatus.PENDING and all(status[d] == StepStatus.SUCCEEDED for d in deps)]
    if ready:
        ready, refused = _gate(plan, ready)
        _dispatch_on_commit(steps_transition(step_ids=ready, to=StepStatus.QUEUED, bump_attempt=True,
                                             fields={"queued_at": now}))
        if refused:  # a step failed at its gate: its dependents are doomed, the plan may be settled
            _advance(plan)
    elif all(st in STEP_TERMINAL for st in status.values()):
        _finish(plan)


def _gate(plan: Plan, ready: list[uuid.UUID]) -> tuple[list[uuid.UUID], bool]:
    """Check each ready step against budgets and approval policies. A step whose estimate would pass a
    hard cap fails; one that policy gates, or that would exceed a budget, moves to waiting with a pending
    approval. Returns the steps free to run, and whether any step failed here."""
    free, refused = [], False
    policies = approvals.policies()
    for step in Step.objects.filter(id__in=ready):
        # Its dependencies' outputs matter to an LLM's estimate and to a person deciding; load them only then.
        context = _context(plan, step) if agent_get(step.agent).kind == "llm" else None
        estimate = agent_estimate(step.agent, step.input, context or {})
        budget_reason = ""
        if estimate.tokens or estimate.cost:
            Step.objects.filter(id=step.id).update(estimated_tokens=estimate.tokens, estimated_cost=estimate.cost)
            verdict, budget_reason = _budget_verdict(plan, estimate)
            if verdict == "cap":
                steps_transition(step_ids=[step.id], to=StepStatus.FAILED,
                                 fields={"finished_at": timezone.now(), "error_code": "budget.cap_exceeded",
                                         "error_message": budget_reason}, event_data={"code": "budget.cap_exceeded"})
                refused = True
                continue
        facts = approvals.StepFacts(agent=step.agent, template=plan.template, step_key=step.key, risk=step.risk,
                                    estimated_cost=estimate.cost, requested=step.approval_requested,
                                    budget_reason=budget_reason)
        requirement = approvals.requirement_for(facts, among=policies)
        if requirement is None:
            free.append(step.id)
            continue
        if steps_transition(step_ids=[step.id], to=StepStatus.WAITING, event_data={"reason": requirement.reason}):
            approvals.approval_request(plan_id=plan.id, step_id=step.id, step_key=step.key, agent=step.agent,
                                       plan_request=plan.request, owner=plan.owner, step_input=step.input,
                                       context=_context(plan, step) if context is None else context,
                                       requirement=requirement)
    return free, refused


def _context(plan: Plan, step: Step) -> dict[str, Any]:
    """The outputs of the step's dependencies, by key: what its agent will receive as context."""
    if not step.depends_on:
        return {}
    return dict(Step.objects.filter(plan=plan, key__in=step.depends_on).values_list("key", "output"))


def _budget_verdict(plan: Plan, estimate: Estimate) -> tuple[str, str]:
    """("ok" | "approve" | "cap", why) for a call of ``estimate`` in ``plan``. Totals count what was spent
    plus the estimates of steps queued or running (reserved). Locks the owner's UserBudget row (plan, then
    user: the order every writer of totals uses)."""
    user = UserBudget.objects.select_for_update().filter(user_id=plan.owner_id).first()
    user = user if user is not None and user.limited() else None
    if user is None and not plan.limited():
        return "ok", ""

    def reserved(steps: Any) -> tuple[int, Decimal]:
        sums = steps.filter(status__in=STEP_ACTIVE).aggregate(t=Sum("estimated_tokens"), c=Sum("estimated_cost"))
        return int(sums["t"] or 0), sums["c"] or Decimal(0)

    def totals(owner: Spending, tokens: int, cost: Decimal, cap: bool) -> Totals:
        return Totals(tokens_used=owner.tokens_used + tokens, cost_used=owner.cost_used + cost,
                      budget_tokens=owner.cap_tokens if cap else owner.budget_tokens,
                      budget_cost=owner.cap_cost if cap else owner.budget_cost)

    plan_reserved = reserved(Step.objects.filter(plan=plan))
    user_reserved = reserved(Step.objects.filter(plan__owner_id=plan.owner_id)) if user else (0, Decimal(0))
    for cap in (True, False):
        check = budget_check(estimate=estimate, plan=totals(plan, *plan_reserved, cap=cap),
                             user=totals(user, *user_reserved, cap=cap) if user else None)
        if not check.fits:
            what = "pass the hard cap" if cap else "exceed the budget"
            return ("cap" if cap else "approve",
                    f"its estimate ({estimate.tokens} tokens, ${estimate.cost}) would {what} on "
                    f"{', '.join(check.exceeded)}")
    return "ok", ""


def step_gate_resolved(resolution: approvals.Resolution) -> None:
    """The approval of a waiting step was decided (inside the deciding transaction): run the step, with
    the edited input if there is one, or end it rejected / failed; then advance its plan."""
    plan = _plan_locked(resolution.plan_id)
    actor = resolution.actor
    data = {"approval_id": str(resolution.approval_id), "timed_out": resolution.timed_out}
    if resolution.status == "approved":
        fields: dict[str, Any] = {"queued_at": timezone.now()}
        if resolution.edited_input is not None:
            fields["input"] = resolution.edited_input
        moved = steps_transition(step_ids=[resolution.step_id], to=StepStatus.QUEUED, bump_attempt=True,
                                 fields=fields, event_data=data, actor=actor)
        _dispatch_on_commit(moved)
    else:
        rejected = resolution.status == "rejected"
        code = "approval.rejected" if rejected else "approval.timed_out"
        message = resolution.comment or ("a person rejected the step" if rejected else "no decision in time")
        moved = steps_transition(step_ids=[resolution.step_id],
                                 to=StepStatus.REJECTED if rejected else StepStatus.FAILED,
                                 fields={"finished_at": timezone.now(), "error_code": code,
                                         "error_message": message},
                                 event_data={**data, "code": code}, actor=actor)
    if moved and plan.status == PlanStatus.RUNNING:
        _advance(plan)


def approval_event(plan_id: uuid.UUID, type_: str, step_key: str, data: dict[str, Any],
                   actor: User | None) -> None:
    """Where the approvals app records its events: the plan's event record (the audit trail)."""
    events_record(plan_id=plan_id, items=[(type_, step_key, data)], actor=actor)


def plan_advance(*, plan_id: uuid.UUID) -> None:
    """Queue whatever is ready and finish the plan if it is settled. Idempotent; takes the plan lock."""
    with transaction.atomic():
        plan = _plan_locked(plan_id)
        if plan.status == PlanStatus.RUNNING:
            _advance(plan)


def plan_cancel(*, plan_id: uuid.UUID, actor: User | None = None) -> Plan:
    """Cancel a plan and every step that has not ended. Raises Conflict if the plan has already ended.

    A step whose agent is running keeps running, but its result is discarded (its attempt is stale).
    """
    with transaction.atomic():
        plan = _plan_locked(plan_id)
        if plan.status in PLAN_TERMINAL:
            raise Conflict(f"the plan has already {plan.status}", code="plan.finished")
        open_steps = list(Step.objects.filter(plan=plan).exclude(status__in=STEP_TERMINAL)
                          .values_list("id", flat=True))
        # Their approvals close after commit, in their own transaction (lock order: approval, then plan).
        transaction.on_commit(lambda: approvals.approvals_cancel(step_ids=open_steps))
        steps_transition(step_ids=open_steps, to=StepStatus.CANCELLED, actor=actor,
                         fields={"finished_at": timezone.now(), "error_code": "plan.cancelled",
                                 "error_message": "the plan was cancelled"})
        _plan_transition(plan, PlanStatus.CANCELLED, actor=actor)
    return plan


# --- running steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedStep:
    id: uuid.UUID
    plan_id: uuid.UUID
    key: str
    agent: str
    attempt: int
    input: dict[str, Any]
    context: dict[str, Any]
    timeout: float


def step_claim(*, step_id: uuid.UUID, attempt: int, worker: str) -> ClaimedStep | None:
    """Claim a queued step for this delivery. None if the delivery is a duplicate or stale: the step is
    already claimed, finished, cancelled, or was queued again under a new attempt.

    The claim is one statement, atomic on its own: it runs in autocommit (no BEGIN/COMMIT round trips on
    the hottest path). The context read after it needs no transaction: succeeded outputs never change.
    Must not be called inside a transaction."""
    now = timezone.now()
    lease = Sql("%s::timestamptz + make_interval(secs => timeout + %s)", (now, settings.ORCH_LEASE_GRACE))
    moved = steps_transition(step_ids=[step_id], to=StepStatus.RUNNING, attempt=attempt,
                             fields={"started_at": now, "worker": worker, "lease_expires_at": lease},
                             event_data={"worker": worker})
    if not moved:
        log.info("orchestrator.step.claim_noop", extra={"step_id": str(step_id), "attempt": attempt})
        return None
    step = moved[0]
    context = dict(Step.objects.filter(plan_id=step.plan_id, key__in=step.depends_on)
                   .values_list("key", "output")) if step.depends_on else {}
    log.info("orchestrator.step.claimed", extra={"plan_id": str(step.plan_id), "step_id": str(step_id),
                                                 "attempt": attempt, "worker": worker})
    return ClaimedStep(step.id, step.plan_id, step.key, step.agent, attempt, step.input, context, step.timeout)


def _step_end(*, step_id: uuid.UUID, attempt: int, to: StepStatus, fields: dict[str, Any],
              event_data: dict[str, Any] | None = None, spent: tuple[int, str] | None = None) -> bool:
    with transaction.atomic():
        # The step's plan, locked, in one statement (a hot path: compiling the ORM query cost more than running it).
        plan = next(iter(Plan.objects.raw(
            f"SELECT * FROM {Plan._meta.db_table} WHERE id = (SELECT plan_id FROM {Step._meta.db_table} "
            "WHERE id = %s) FOR NO KEY UPDATE", [step_id])), None)
        if plan is None:
            return False
        moved = steps_transition(step_ids=[step_id], to=to, attempt=attempt, event_data=event_data,
                                 fields={**fields, "finished_at": timezone.now(), "lease_expires_at": None})
        if not moved:
            log.info("orchestrator.step.result_stale", extra={"step_id": str(step_id), "attempt": attempt})
            return False
        if spent is not None:
            _totals_add(plan, tokens=spent[0], cost=spent[1])
        if plan.status == PlanStatus.RUNNING:
            if to == StepStatus.SUCCEEDED:
                _advance_after_success(plan, moved[0].key)
            else:
                _advance(plan)
    return True


def _totals_add(plan: Plan, *, tokens: int, cost: str) -> None:
    """Add a call's tokens and cost to its plan's and its owner's running totals (the caller holds the
    plan lock; the user's row is created on demand by an upsert, so concurrent plans cannot race it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Plan._meta.db_table} SET tokens_used = tokens_used + %s, "
                       "cost_used = cost_used + %s::numeric WHERE id = %s", [tokens, cost, plan.id])
        table = UserBudget._meta.db_table
        cursor.execute(f"INSERT INTO {table} (user_id, tokens_used, cost_used) VALUES (%s, %s, %s::numeric) "
                       f"ON CONFLICT (user_id) DO UPDATE SET tokens_used = {table}.tokens_used + EXCLUDED.tokens_used, "
                       f"cost_used = {table}.cost_used + EXCLUDED.cost_used", [plan.owner_id, tokens, cost])
    plan.tokens_used += tokens  # the locked instance stays current for budget checks in this transaction
    plan.cost_used += Decimal(cost)


def step_succeed(*, step_id: uuid.UUID, attempt: int, output: Any, usage: dict[str, Any] | None) -> bool:
    """Record a result and start what it unblocks. False if this attempt is no longer current.

    ``usage`` (``prompt_tokens``, ``completion_tokens``, ``cost`` as a decimal string, ``model``) is stored
    on the step and added to the plan's and the owner's totals in the same transaction."""
    json.dumps(output)  # raises TypeError before anything is written if the output is not JSON-safe
    fields: dict[str, Any] = {"output": Sql("%s", (Jsonb(output),)), "usage": usage}
    spent = None
    if usage:
        prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        cost = str(usage.get("cost") or "0")
        fields.update(prompt_tokens=prompt, completion_tokens=completion, cost=Sql("%s::numeric", (cost,)))
        spent = (prompt + completion, cost)
    # experiments: how the call was served (cached, routed, variant) goes into the step.succeeded event too.
    marks = {key: usage[key] for key in USAGE_MARKS if usage and key in usage}
    return _step_end(step_id=step_id, attempt=attempt, to=StepStatus.SUCCEEDED, fields=fields, spent=spent,
                     event_data=marks or None)


def step_output_chunk(*, step_id: uuid.UUID, attempt: int, text: str) -> None:
    """Record a batch of streamed output as a ``step.output`` event (short transaction); nothing if this
    attempt is no longer the running one."""
    with transaction.atomic():
        step = Step.objects.filter(id=step_id, attempt=attempt, status=StepStatus.RUNNING).values(
            "plan_id", "key").first()
        if step is not None:
            events_record(plan_id=step["plan_id"], items=[("step.output", step["key"],
                                                           {"attempt": attempt, "text": text})])


def step_fail(*, step_id: uuid.UUID, attempt: int, code: str, message: str) -> bool:
    """Record a terminal failure; its dependents are cancelled, and the plan fails once settled."""
    return _step_end(step_id=step_id, attempt=attempt, to=StepStatus.FAILED,
                     fields={"error_code": code, "error_message": message[:2000]},
                     event_data={"code": code, "message": message[:500]})


def step_retrying(*, step_id: uuid.UUID, attempt: int, code: str, message: str, delay: float) -> None:
    """Record that the agent call hit a transient error and will be tried again after ``delay`` s."""
    with transaction.atomic():
        step = Step.objects.filter(id=step_id, attempt=attempt, status=StepStatus.RUNNING).first()
        if step is not None:
            events_record(plan_id=step.plan_id, items=[("step.retrying", step.key, {
                "attempt": attempt, "code": code, "message": message[:500], "delay": round(delay, 3)})])


# --- the reconciler -----------------------------------------------------------------------------------


def reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Repair what lost messages and lost workers leave behind. Safe to run anywhere, any number of times.

    * queued steps whose message is older than ORCH_REQUEUE_AFTER are sent again (same attempt);
    * running steps whose lease expired lost their worker: a new attempt, or failed after max_attempts;
    * running plans with nothing queued or running are advanced (a lost "step ended" follow-up);
    * plans still planning after ORCH_REQUEUE_AFTER get their planner message again.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.ORCH_REQUEUE_AFTER)
    counts = {"requeued": 0, "lease_expired": 0, "advanced": 0, "replanned": 0}

    stale = list(Step.objects.filter(status=StepStatus.QUEUED, queued_at__lt=stale_before)
                 .values_list("id", flat=True)[:1000])
    with transaction.atomic():
        moved = steps_transition(step_ids=stale, to=StepStatus.QUEUED, fields={"queued_at": now},
                                 event="step.requeued", event_data={"reason": "message_lost"})
        _dispatch_on_commit(moved)
    counts["requeued"] = len(moved)

    expired = Step.objects.filter(status=StepStatus.RUNNING, lease_expires_at__lt=now)
    for step_id, plan_id, attempt, max_attempts in expired.values_list("id", "plan_id", "attempt",
                                                                         "max_attempts")[:1000]:
        counts["lease_expired"] += _step_lost(step_id, plan_id, attempt, max_attempts)

    active = Step.objects.filter(plan=OuterRef("pk"), status__in=[*STEP_ACTIVE, StepStatus.WAITING])
    for plan_id in Plan.objects.filter(status=PlanStatus.RUNNING).exclude(Exists(active)).values_list("id",
                                                                                                  flat=True):
        plan_advance(plan_id=plan_id)
        counts["advanced"] += 1

    for plan_id in Plan.objects.filter(status=PlanStatus.PLANNING, created_at__lt=stale_before).values_list(
            "id", flat=True):
        current_app.send_task(PLAN_GENERATE_TASK, args=(str(plan_id),))
        counts["replanned"] += 1
    if any(counts.values()):
        log.warning("orchestrator.reconcile.repaired", extra=counts)
    return counts


def _step_lost(step_id: uuid.UUID, plan_id: uuid.UUID, attempt: int, max_attempts: int) -> int:
    with transaction.atomic():
        plan = _plan_locked(plan_id)
        data = {"reason": "worker_lost"}
        if attempt < max_attempts:
            moved = steps_transition(step_ids=[step_id], to=StepStatus.QUEUED, attempt=attempt, bump_attempt=True,
                                     fields={"queued_at": timezone.now(), "lease_expires_at": None},
                                     event="step.retrying", event_data=data)
            _dispatch_on_commit(moved)
        else:
            moved = steps_transition(step_ids=[step_id], to=StepStatus.FAILED, attempt=attempt, event_data=data,
                                     fields={"finished_at": timezone.now(), "error_code": "step.worker_lost",
                                             "error_message": f"its worker was lost {attempt} times"})
            if moved and plan.status == PlanStatus.RUNNING:
                _advance(plan)
    return len(moved)
