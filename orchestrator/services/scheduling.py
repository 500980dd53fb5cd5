"""Deciding what runs next, under the plan's lock: cancel what can never run, gate and queue what is
ready, finish a settled plan. Readiness itself is defined once, in services/readiness.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.api import agent_get
from orchestrator import selectors
from orchestrator.models import Plan, Step
from orchestrator.services import budgets, fairness, readiness
from orchestrator.services.budgets import gate
from orchestrator.services.dispatch import dispatch_on_commit
from orchestrator.services.transitions import (
    Moved,
    plan_locked,
    plan_transition,
    step_claimed,
    steps_transition,
)
from orchestrator.states import PlanStatus, StepStatus


@dataclass(frozen=True)
class Here:
    """The worker thread whose success is being recorded: it can run next, itself, one step it frees that is
    for its own queue (``steps.step_run``)."""

    queue: str
    worker: str


def advance(plan: Plan, *, freed: Sequence[uuid.UUID] | None = None, here: Here | None = None,
            added: dict[uuid.UUID, Step] | None = None) -> Moved | None:
    """Under the plan lock: cancel steps that can never run, start (or gate) the ready ones, and finish a
    settled plan. The steps it queues get their messages on commit, but for the first one on ``here``'s queue:
    that one is claimed for ``here`` in this transaction and gets no message (the thread runs it next; if it
    dies first, the lease lapses and the reconciler gives the step a new attempt); that step is returned.
    ``freed``: the steps a success just made ready (``Moved.freed``), when that success is all that changed;
    otherwise (a failure, a decision, a change of structure) the plan's counts are recomputed and the whole plan
    is looked at. ``added``: steps this transaction inserted, by id, which the gate need not read back
    (``budgets.gate``)."""
    if freed is None:
        graph = readiness.graph_refresh(plan_id=plan.id)
        steps_transition(step_ids=graph.doomed(), sources=[StepStatus.PENDING], to=StepStatus.CANCELLED,
                         fields={"finished_at": timezone.now(), "error_code": "step.upstream_failed",
                                 "error_message": "a step it depends on did not succeed"})
    ready = graph.ready() if freed is None else list(freed)
    ready = fairness.admit(plan, ready)  # over its owner's cap a step stays pending, ready
    if ready:
        free, refused = gate(plan, ready, added=added)
        claimed = _queue(free, here)
        if refused:  # a step failed at its gate: its dependents are doomed, the plan may be settled
            advance(plan)
        return claimed
    if readiness.plan_settled(plan_id=plan.id):
        finish(plan)
    return None


def _queue(free: Sequence[uuid.UUID], here: Here | None) -> Moved | None:
    """Queue the steps the gate freed; they get their messages on commit, but for the one claimed for ``here``:
    the one ranked highest (``Step.rank``: the longest chain after it), as its messages go out in that order."""
    queued = steps_transition(step_ids=free, sources=[StepStatus.PENDING], to=StepStatus.QUEUED,
                              fields={"queued_at": timezone.now(), "requeues": 0}, increment=("attempt",))
    queued.sort(key=lambda step: -step.rank)  # stable: equal ranks keep the statement's order
    claimed = _claim_here(queued, here)
    dispatch_on_commit([s for s in queued if claimed is None or s.id != claimed.id])
    return claimed


def _claim_here(queued: list[Moved], here: Here | None) -> Moved | None:
    if here is None:
        return None
    for step in queued:
        if agent_get(step.agent).queue == here.queue:
            return step_claimed(step_id=step.id, attempt=step.attempt, worker=here.worker)
    return None


def finish(plan: Plan) -> None:
    """End a settled plan: failed with its first failed step's code, or succeeded with its sinks' outputs (the
    failed steps and the sinks in one read)."""
    ended = [StepStatus.FAILED, StepStatus.REJECTED]
    rows = list(Step.objects.filter(plan=plan).filter(Q(status__in=ended) | Q(dependents=[]))
                .order_by("finished_at", "key")
                .values_list("key", "status", "error_code", "error_message", "dependents", "output"))
    failed = next(((key, code, message) for key, status, code, message, _, _ in rows if status in ended), None)
    if failed:
        key, code, error = failed
        plan_transition(plan, PlanStatus.FAILED, error_code=code, error_message=f"step {key!r} failed: {error}",
                        data={"step": key, "code": code})
        return
    sinks = [(key, output) for key, _, _, _, dependents, output in rows if not dependents]
    outputs = dict(sorted(sinks, key=lambda sink: sink[0]))  # by key, as the answer always listed them
    result = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    plan_transition(plan, PlanStatus.SUCCEEDED, result=result)


def plan_followup(*, plan_id: uuid.UUID, freed: Sequence[uuid.UUID], here: Here | None = None) -> Moved | None:
    """After a success recorded under the shared lock (``steps._succeed_shared``): gate and queue what it
    freed, or finish the plan if that success may have been its last step. Takes the plan lock; returns the
    step claimed for ``here`` (see ``advance``). (If this never runs, a worker died in between: the reconciler
    advances the plan.)"""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status == PlanStatus.RUNNING:
            return advance(plan, freed=freed, here=here)
    return None


@dataclass(frozen=True)
class Queued:
    """What ``advance_shared`` did: whether it queued the freed steps, and the one it claimed for ``here``."""

    done: bool
    claimed: Moved | None = None


def advance_shared(*, freed: Sequence[uuid.UUID], here: Here | None) -> Queued:
    """In the transaction of a success recorded under the plan's shared lock (``steps._succeed_shared``), which
    holds that lock until it commits: queue the steps that success freed, and claim one for ``here`` as
    ``advance`` does, when the gate needs no decision that must see the whole plan (``budgets.gate_passes``:
    nothing to reserve, no approval) and no owner cap applies. Else it does nothing (``Queued(False)``), and
    the caller takes the exclusive lock after its commit (``plan_followup``).

    So the common hop of a chain is one transaction and one commit. Two of these side by side never touch the
    same step (a dependent's count reaches 0 in exactly one success), and whatever decides for the plan as a
    whole (cancel, a failure, an edit) waits for the shared lock, as it waits for the success itself."""
    if settings.ORCH_OWNER_MAX_IN_FLIGHT:
        return Queued(False)
    steps, organisation_id, template = selectors.steps_pending_to_gate(list(freed))
    if steps and not budgets.gate_passes(steps, organisation_id=organisation_id, template=template):
        return Queued(False)
    return Queued(True, _queue([step.id for step in steps], here))


def owner_release(*, plan_id: uuid.UUID) -> None:
    """A step of this plan's owner ended: start the ready steps the owner's cap held back, oldest plan first
    (services/fairness.py). Each plan under its own lock, then committed: no two plan locks are held."""
    for deferred in fairness.deferred_plans(plan_id=plan_id):
        with transaction.atomic():
            plan = plan_locked(deferred)
            if plan.status == PlanStatus.RUNNING:
                advance(plan, freed=readiness.steps_ready(plan_id=plan.id))


def plan_advance(*, plan_id: uuid.UUID) -> None:
    """Recompute the plan's counts, queue whatever is ready and finish the plan if it is settled. Idempotent;
    takes the plan lock."""
    with transaction.atomic():
        plan = plan_locked(plan_id)
        if plan.status == PlanStatus.RUNNING:
            advance(plan)
