"""The plan and step state machines, as data. ``orchestrator.services`` is their only writer."""

from __future__ import annotations

from django.db import models

from common.errors import Conflict


class StepStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its dependencies
    WAITING = "waiting"  # its dependencies are done; it waits for people (an approval), holding no worker
    QUEUED = "queued"  # its message is (or should be) on the broker; `attempt` names the delivery
    RUNNING = "running"  # claimed by a worker, its agent is being called
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"  # a person (or an approval's default decision) said no
    CANCELLED = "cancelled"  # the plan was cancelled, or a dependency failed so it can never run


class PlanStatus(models.TextChoices):
    PLANNING = "planning"  # the LLM planner is writing its steps
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


S, P = StepStatus, PlanStatus

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    # pending -> failed: refused before it ran (its estimate would pass a hard budget cap).
    S.PENDING: frozenset({S.QUEUED, S.WAITING, S.FAILED, S.CANCELLED}),
    # waiting -> queued: approved; -> rejected / failed: rejected, or timed out with that default.
    S.WAITING: frozenset({S.QUEUED, S.REJECTED, S.FAILED, S.CANCELLED}),
    # queued -> queued: the reconciler sends a message again that was probably lost; -> failed: sent
    # ORCH_MAX_REQUEUES times and never claimed (step.undeliverable).
    S.QUEUED: frozenset({S.QUEUED, S.RUNNING, S.FAILED, S.CANCELLED}),
    # running -> queued: the worker was lost (lease expired); a new attempt goes out.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.QUEUED, S.CANCELLED}),
    # -> pending: a person re-runs it, or a step upstream of it, with an edited input (services/edits.py,
    # issue 10); nothing else ever moves a succeeded step.
    S.SUCCEEDED: frozenset({S.PENDING}),
    # -> pending: the plan is retried or resumed (services/resume.py, issue 10), or re-run from a step.
    S.FAILED: frozenset({S.PENDING}),
    S.REJECTED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}

PLAN_TRANSITIONS: dict[PlanStatus, frozenset[PlanStatus]] = {
    P.PLANNING: frozenset({P.RUNNING, P.FAILED, P.CANCELLED}),
    P.RUNNING: frozenset({P.SUCCEEDED, P.FAILED, P.CANCELLED}),
    P.SUCCEEDED: frozenset({P.RUNNING}),  # re-run from a step (services/edits.py, issue 10)
    P.FAILED: frozenset({P.RUNNING}),  # retried (services/resume.py, issue 10)
    P.CANCELLED: frozenset({P.RUNNING}),  # resumed
}

STEP_ACTIVE = frozenset({S.QUEUED, S.RUNNING})
STEP_TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED})
# A step that ended this way dooms the steps that depend on it, and fails the plan.
STEP_UNSUCCESSFUL = frozenset({S.FAILED, S.REJECTED, S.CANCELLED})
PLAN_TERMINAL = frozenset({P.SUCCEEDED, P.FAILED, P.CANCELLED})


def step_sources(to: StepStatus) -> list[str]:
    """The statuses a step may move to ``to`` from."""
    return [str(src) for src, targets in STEP_TRANSITIONS.items() if to in targets]


class InvalidTransition(Conflict):
    code = "state.invalid_transition"


def check_plan_transition(current: str, to: PlanStatus) -> None:
    if to not in PLAN_TRANSITIONS[PlanStatus(current)]:
        raise InvalidTransition(f"a {current} plan cannot become {to}")
