"""Running a step: claim, call its agent with no connection held, record the outcome.

``step_run`` is the whole of one run_step delivery (the task is a thin adapter around it). A finished
agent call is never lost to a short database outage: recording is retried with backoff for as long as the
step's lease is known to hold (services/leases.py), so the agent is called again only when the worker is
really gone.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from agents.api import AgentCall, AgentError, ChunkBuffer, TransientAgentError, agent_get, agent_run
from common.edge import storable
from common.logging import bind, unbind
from orchestrator import experimenting
from orchestrator.models import Step
from orchestrator.services import growth, leases, memory, pulls, readiness
from orchestrator.services.budgets import totals_add
from orchestrator.services.durable import briefly, durably
from orchestrator.services.scheduling import (
    Here,
    advance,
    advance_shared,
    owner_release,
    plan_advance,
    plan_followup,
)
from orchestrator.services.transitions import (
    Moved,
    events_record,
    plan_of_step_locked,
    step_claimed,
    steps_transition,
)
from orchestrator.states import PlanStatus, StepStatus

log = logging.getLogger("orchestrator")

# Usage keys that say how an agent call was served (issue 14; agents.base.Usage.marks), copied into the
# step.succeeded event.
USAGE_MARKS = ("cached", "routed", "saved_cost", "variant")

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
    deadline: float  # seconds the whole run may take, from the claim
    may_free: bool = False  # at the claim, its success may free a dependent (transitions._MAY_FREE_COLUMN)


def step_claim(*, step_id: uuid.UUID, attempt: int, worker: str) -> ClaimedStep | None:
    """Claim a queued step for this delivery. None if the delivery is a duplicate or stale: the step is
    already claimed, finished, cancelled, or was queued again under a new attempt.

    The claim is one statement, atomic on its own: it runs in autocommit (no BEGIN/COMMIT round trips on
    the hottest path). It sets the lease and the run's deadline. Must not be called inside a transaction."""
    step = step_claimed(step_id=step_id, attempt=attempt, worker=worker)
    if step is None:
        log.debug("orchestrator.step.claim_noop", extra={"step_id": str(step_id), "attempt": attempt})
        return None
    return _with_context(step)


def _with_context(step: Moved) -> ClaimedStep:
    """A step just claimed, with its dependencies' outputs (which its claim read)."""
    return ClaimedStep(step.id, step.plan_id, step.key, step.agent, step.attempt, step.input, step.context or {},
                       step.timeout, step.deadline, step.may_free)


def _already_recorded(step_id: uuid.UUID, attempt: int, to: StepStatus) -> bool:
    return Step.objects.filter(id=step_id, attempt=attempt, status=to).exists()


@dataclass(frozen=True)
class Ended:
    """How recording an attempt's end went: whether it was recorded (False: stale)."""

    recorded: bool
    claimed: Moved | None = None  # a step its follow-up freed and claimed for this thread to run next


def _step_end(*, step_id: uuid.UUID, attempt: int, to: StepStatus, fields: dict[str, Any],
              event_data: dict[str, Any] | None = None, spent: tuple[int, Decimal] | None = None,
              here: Here | None = None) -> Ended:
    """Record how a running attempt ended and advance its plan, in one transaction under the plan lock.

    A stale attempt's result is discarded, but what it spent is still added to the totals (it was spent);
    a retry of a recording that did commit changes nothing."""
    with transaction.atomic():
        plan = plan_of_step_locked(step_id)
        if plan is None:
            return Ended(False)
        grown = None  # what a success spawns is validated whole before anything is recorded
        if to == StepStatus.SUCCEEDED and plan.status == PlanStatus.RUNNING:
            grown = growth.prepare(plan, step_id=step_id, attempt=attempt, output=fields["output"])
            if grown is not None and grown.refused is not None:
                to, fields = StepStatus.FAILED, {**fields, **grown.refusal_fields()}
                event_data = {"code": grown.refused.code, "message": grown.refused.message[:500]}
        moved = steps_transition(step_ids=[step_id], sources=[StepStatus.RUNNING], to=to, attempt=attempt,
                                 event_data=event_data,
                                 fields={**fields, "finished_at": timezone.now(), "lease_expires_at": None})
        if not moved:
            if _already_recorded(step_id, attempt, to):
                return Ended(True)
            log.info("orchestrator.step.result_stale", extra={"step_id": str(step_id), "attempt": attempt})
            if spent is not None:
                totals_add(plan, tokens=spent[0], cost=spent[1])
            return Ended(False)
        if spent is not None:
            totals_add(plan, tokens=spent[0], cost=spent[1])
        if grown is not None:
            growth.apply(plan, grown)  # then a whole pass: spawned steps need not depend on this one
        claimed = None
        if plan.status == PlanStatus.RUNNING:
            claimed = advance(plan, freed=moved[0].freed if to == StepStatus.SUCCEEDED and grown is None else None,
                              here=here)
    return Ended(True, claimed)


def _succeed_shared(*, step_id: uuid.UUID, attempt: int, fields: dict[str, Any], here: Here | None,
                    frees: bool) -> Ended | None:
    """The common success, recorded without the plan's exclusive lock: a step that spent nothing (no totals
    to add) and cannot grow. None when it is not that kind, or not running at this attempt any more (the
    caller takes the locked path, ``_step_end``, which tells which).

    One statement (``steps_transition(plan_shared=True)``) locks the plan's row FOR SHARE, records the success
    and its event, and counts down its dependents. So step ends of one plan run side by side, while everything
    that decides under the exclusive lock waits for them and they for it. ``frees``: at its claim, the step's success
    could free a dependent (``Moved.may_free``: one with few dependencies left, or its last). Then the
    statement runs in a short transaction that also queues what it freed, under the shared lock it holds, when
    no decision over the whole plan is needed (``scheduling.advance_shared``): a hop commits once. Otherwise
    it runs alone in autocommit, which holds its dependents' rows the shortest time (the siblings of a join
    count it down one after another), and what it freed is queued, or the plan finished when nothing of it
    may be left open, under the exclusive lock after its commit (``plan_followup``). Must not run in a
    transaction."""
    with transaction.atomic() if frees else nullcontext():
        moved = steps_transition(step_ids=[step_id], sources=[StepStatus.RUNNING], to=StepStatus.SUCCEEDED,
                                 attempt=attempt, plan_shared=True,
                                 fields={**fields, "finished_at": timezone.now(), "lease_expires_at": None})
        if not moved:
            return None
        step = moved[0]
        # What it freed is queued under the shared lock it holds, in this transaction, when that needs no
        # decision over the whole plan: one commit for the hop.
        queued = advance_shared(freed=step.freed, here=here) if (
            frees and step.freed and not step.recount) else None
    if queued is not None and queued.done:
        return Ended(True, queued.claimed)
    if step.recount:
        plan_advance(plan_id=step.plan_id)
        return Ended(True)
    # A success that freed nothing and leaves no dependent waiting may have been the plan's last. Seen after
    # its own commit, so of two last steps ending at once at least one sees the other ended (the follow-up
    # checks again under the lock).
    if step.freed or (not step.blocked and readiness.plan_settled(plan_id=step.plan_id)):
        return Ended(True, plan_followup(plan_id=step.plan_id, freed=step.freed, here=here))
    return Ended(True)


def _spent(usage: dict[str, Any] | None) -> tuple[int, Decimal] | None:
    if not usage:
        return None
    tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    return tokens, Decimal(str(usage.get("cost") or "0"))


def _succeed(*, step_id: uuid.UUID, attempt: int, output: Any, usage: dict[str, Any] | None,
             here: Here | None = None, frees: bool = False) -> Ended:
    output = storable(output)
    json.dumps(output)
    fields: dict[str, Any] = {"output": output, "usage": usage}
    if usage:
        fields.update(prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      completion_tokens=int(usage.get("completion_tokens", 0)),
                      cost=Decimal(str(usage.get("cost") or "0")))
    elif not (isinstance(output, dict) and "spawn" in output):
        ended = _succeed_shared(step_id=step_id, attempt=attempt, fields=fields, here=here, frees=frees)
        if ended is not None:
            return ended
    # experiments: how the call was served (cached, routed, variant) goes into the step.succeeded event too.
    marks = {key: usage[key] for key in USAGE_MARKS if usage and key in usage}
    return _step_end(step_id=step_id, attempt=attempt, to=StepStatus.SUCCEEDED, fields=fields,
                     spent=_spent(usage), event_data=marks or None, here=here)


def _fail(*, step_id: uuid.UUID, attempt: int, code: str, message: str,
          usage: dict[str, Any] | None = None) -> Ended:
    message = storable(message)
    return _step_end(step_id=step_id, attempt=attempt, to=StepStatus.FAILED,
                     fields={"error_code": code, "error_message": message[:2000]},
                     event_data={"code": code, "message": message[:500]}, spent=_spent(usage))


def step_succeed(*, step_id: uuid.UUID, attempt: int, output: Any, usage: dict[str, Any] | None) -> bool:
    """Record a result and start what it unblocks. False if this attempt is no longer current.

    ``usage`` (``prompt_tokens``, ``completion_tokens``, ``cost`` as a decimal string, ``model``) is stored
    on the step and added to the plan's and the owner's totals in the same transaction. Text Postgres
    cannot store (U+0000, lone surrogates) is escaped. Raises TypeError, before writing anything, if the
    output is not JSON."""
    return _succeed(step_id=step_id, attempt=attempt, output=output, usage=usage).recorded


def step_fail(*, step_id: uuid.UUID, attempt: int, code: str, message: str,
              usage: dict[str, Any] | None = None) -> bool:
    """Record a terminal failure (and what its tries spent); its dependents are cancelled, and the plan
    fails once settled."""
    return _fail(step_id=step_id, attempt=attempt, code=code, message=message, usage=usage).recorded


def _running_step_event(step_id: uuid.UUID, attempt: int, type_: str, data: dict[str, Any]) -> None:
    """Record an event of a running attempt (short transaction); nothing if it is no longer running.
    Best effort: progress is not worth failing a step over, so a database error is logged."""
    try:
        with transaction.atomic():
            step = Step.objects.filter(id=step_id, attempt=attempt, status=StepStatus.RUNNING).values(
                "plan_id", "key").first()
            if step is not None:
                events_record(plan_id=step["plan_id"], items=[(type_, step["key"], {"attempt": attempt, **data})])
    except DatabaseError as exc:
        log.warning("orchestrator.step.event_lost", extra={"step_id": str(step_id), "type": type_,
                                                           "error": repr(exc)})
    finally:
        connection.close()


def step_output_chunk(*, step_id: uuid.UUID, attempt: int, text: str) -> None:
    """Record a batch of streamed output as a ``step.output`` event."""
    _running_step_event(step_id, attempt, "step.output", {"text": storable(text)})


def step_retrying(*, step_id: uuid.UUID, attempt: int, code: str, message: str, delay: float) -> None:
    """Record that the agent call hit a transient error and will be tried again after ``delay`` s."""
    _running_step_event(step_id, attempt, "step.retrying",
                        {"code": code, "message": storable(message)[:500], "delay": round(delay, 3)})


# --- one delivery, whole ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How the agent call ended, as recorded (what memory learns from it)."""

    status: StepStatus
    output: Any = None
    error: str = ""


Recording = Callable[[], tuple[Ended, Outcome]]


def _failure(step_id: uuid.UUID, attempt: int, code: str, message: str,
             usage: dict[str, Any] | None = None) -> Recording:
    return lambda: (_fail(step_id=step_id, attempt=attempt, code=code, message=message, usage=usage),
                    Outcome(StepStatus.FAILED, error=message))


def _call_agent(claimed: ClaimedStep, lease: leases.Lease, tokens_left: int | None, owner: str,
                here: Here) -> Recording:
    """Call the step's agent (no connection held, within the lease's deadline); return how to record it (a
    success may claim a step it frees for ``here``)."""
    step_id, attempt = claimed.id, claimed.attempt
    output = ChunkBuffer(lambda text: step_output_chunk(step_id=step_id, attempt=attempt, text=text))
    call = AgentCall(plan_id=str(claimed.plan_id), step_id=str(step_id), step_key=claimed.key, attempt=attempt,
                     input=claimed.input, context=claimed.context, timeout=claimed.timeout,
                     deadline=lease.deadline, on_chunk=output.add, tokens_left=tokens_left, owner=owner)

    def on_retry(try_number: int, exc: TransientAgentError, delay: float) -> None:
        step_retrying(step_id=step_id, attempt=attempt, code=exc.code, message=exc.message, delay=delay)

    try:
        result = agent_run(name=claimed.agent, call=call, on_retry=on_retry)
        output.close()
    except AgentError as exc:
        return _failure(step_id, attempt, exc.code, exc.message, exc.usage.as_dict() if exc.usage else None)
    except Exception as exc:  # the agent boundary: a crash in agent code fails the step, visibly
        log.exception("orchestrator.step.agent_crashed", extra={"step_id": str(step_id), "attempt": attempt})
        return _failure(step_id, attempt, "agent.crashed", f"{type(exc).__name__}: {exc}")
    # Its scratchpad entries before the success that frees the next steps (a database blip is retried).
    durably(lambda: memory.step_answered(claimed, result.output), until=lambda: lease.valid_until, what="memory")
    usage = result.usage.as_dict() if result.usage is not None else {}
    if result.agent != claimed.agent:
        usage["agent"] = result.agent  # its fallback answered

    def record() -> tuple[Ended, Outcome]:
        try:
            ended = _succeed(step_id=step_id, attempt=attempt, output=result.output, usage=usage or None, here=here,
                             frees=claimed.may_free)
            return ended, Outcome(StepStatus.SUCCEEDED, output=result.output)
        except TypeError as exc:
            return _failure(step_id, attempt, "agent.bad_output", f"the agent's output is not JSON: {exc}",
                            usage or None)()

    return record


def _release(plan_id: uuid.UUID) -> None:
    """Its owner has one step less in flight: start what the owner's cap held back (services/fairness.py).
    A database error here costs nothing but a delay: the next end of the owner's steps, or the reconciler,
    releases them."""
    try:
        owner_release(plan_id=plan_id)
    except DatabaseError as exc:
        log.warning("orchestrator.fairness.release_failed", extra={"plan_id": str(plan_id), "error": repr(exc)})
    finally:
        connection.close()


def step_run(*, step_id: uuid.UUID, attempt: int, worker: str, queue: str | None = None) -> None:
    """One delivery of a step: claim it (a duplicate or stale delivery stops here), call its agent while
    the heartbeat keeps the lease, record the outcome. Must not be called inside a transaction.

    The thread then goes on with more work while there is some, each run claimed by the database:
    - a step its success freed on this worker's queue, claimed for this thread in the transaction that
      queues it (``scheduling.Here``), with no message, and so on down a chain. That takes the broker's round
      trip, and a second thread's no-op claim, off a DAG's critical path;
    - else, when ``queue`` is given (the queue this delivery came from, so one this worker consumes), the step
      of that queue queued longest (services/pulls.py). Its message, when it comes, claims nothing (without
      a statement, in the process that pulled it) and pulls the next one in turn. So a wide fan-out runs as
      fast as the threads can claim from Postgres, not at the pace of the broker's deliveries (the worker's
      consumer thread spends three Redis round trips on each). A worker asked to stop takes nothing more.
    The database still decides: every run is a conditional claim of a queued step at its current attempt.

    Raises a database error only when recording failed for as long as the lease held: the reconciler then
    gives the step a new attempt, since this worker can no longer know that it still owns it."""
    claimed = None if pulls.pulled_here(step_id, attempt) else briefly(
        lambda: step_claim(step_id=step_id, attempt=attempt, worker=worker), what="claim")
    while (claimed := claimed or _claim_oldest(queue, worker)) is not None:
        ids = bind(plan_id=str(claimed.plan_id), step_id=str(claimed.id), attempt=claimed.attempt)
        try:
            claimed = _run_claimed(claimed, worker)
        finally:
            unbind(ids)


def _claim_oldest(queue: str | None, worker: str) -> ClaimedStep | None:
    step = pulls.claim_oldest(queue, worker)
    return _with_context(step) if step is not None else None


def _run_claimed(claimed: ClaimedStep, worker: str) -> ClaimedStep | None:
    """Run a claimed step, record its outcome and what it leaves in memory; return the step its success
    claimed for this thread to run next, if any."""
    spec = agent_get(claimed.agent)
    try:
        # An llm call's max_tokens follows what the plan's token budget has left (experiments).
        tokens_left = experimenting.tokens_left(claimed.plan_id) if spec.kind == "llm" else None
        # A cached answer is kept per owner (it may draw on the owner's memory).
        owner = str(memory.owner_of_plan(claimed.plan_id) or "") if spec.options.get("cache") else ""
    finally:
        connection.close()
    with leases.heartbeat.hold("step", claimed.id, claimed.attempt, seconds=claimed.deadline) as lease:
        # An llm step's context is assembled by memory within its agent's token budget (may embed a query).
        claimed = replace(claimed, context=memory.step_context(claimed))
        record = _call_agent(claimed, lease, tokens_left, owner, Here(spec.queue, worker))
        try:
            ended, outcome = durably(record, until=lambda: lease.valid_until, what="record")
        finally:
            connection.close()
    if not ended.recorded:
        return None
    _release(claimed.plan_id)
    # The facts it leaves (an embedding request, so after the record: the plan's own steps do not recall them).
    memory.step_finished(claimed, status=outcome.status, output=outcome.output, error=outcome.error)
    mine = ended.claimed
    return _with_context(mine) if mine is not None else None
