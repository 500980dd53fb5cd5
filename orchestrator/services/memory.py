"""The orchestrator's side of memory (memory/api.py is all it uses):

* ``step_context``: before an LLM step's agent is called, its context is assembled by memory within the
  agent's token budget (``context_budget``; see ``context_budget``); what was included,
  recalled and cut is recorded as the step's ``step.context`` event (sizes, ids and reasons, no content).
* ``step_finished``: after a step's outcome is recorded, what it leaves in memory (its ``memory`` output
  field, an episode, extracted facts); and when that ended the plan, the plan's episode (its working memory
  archived into it, then dropped). When the worker runs a step that success freed next, the writing goes to
  the ``orchestrator.step_remember`` task (``step_remember``), off that step's path.

Memory never fails a step: a memory error is logged and recorded, and the step runs with its plain context.
Both run outside any transaction and give their connection back (they may call an embedding provider).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction

from agents.api import AgentError, agent_get
from common.errors import DomainError
from memory import api as memory
from orchestrator.models import Plan, Step
from orchestrator.services.dispatch import SEND_ERRORS
from orchestrator.services.transitions import events_record
from orchestrator.states import StepStatus

if TYPE_CHECKING:
    from orchestrator.services.steps import ClaimedStep

log = logging.getLogger("orchestrator")


def step_context(claimed: ClaimedStep) -> dict[str, Any]:
    """The context the step's agent receives: assembled by memory for ``llm`` agents, else its dependencies'
    outputs as they are."""
    try:
        spec = agent_get(claimed.agent)
    except AgentError:
        return claimed.context
    if spec.kind != "llm":
        return claimed.context
    try:
        owner_id = Plan.objects.filter(id=claimed.plan_id).values_list("owner_id", flat=True).get()
        budget = context_budget(spec.options)
        assembled = memory.context_assemble(owner=memory.Owner(user_id=owner_id), plan_id=claimed.plan_id,
                                            step_key=claimed.key, agent=claimed.agent, step_input=claimed.input,
                                            dependencies=claimed.context, budget_tokens=budget)
        report: dict[str, Any] = {"attempt": claimed.attempt, **assembled.report()}
        context = assembled.context
    except DomainError as exc:
        log.warning("orchestrator.memory.context_failed", extra={"step_id": str(claimed.id), "code": exc.code})
        report, context = {"attempt": claimed.attempt, "code": exc.code, "message": exc.message[:300]}, claimed.context
    try:
        with transaction.atomic():
            events_record(plan_id=claimed.plan_id, items=[("step.context", claimed.key, report)])
    finally:
        connection.close()
    return context


def context_budget(options: dict[str, Any]) -> int:
    """The agent's ``context_budget``, else MEMORY_CONTEXT_BUDGET; never more than its model's
    ``context_window`` minus the room kept for the answer (``max_tokens``), when the window is given."""
    budget = int(options.get("context_budget") or settings.MEMORY_CONTEXT_BUDGET)
    if options.get("context_window"):
        answer = int(options.get("max_tokens") or settings.LLM_MAX_TOKENS)
        budget = min(budget, max(int(options["context_window"]) - answer, 0))
    return budget


REMEMBER_TASK = "orchestrator.step_remember"


def step_finished(claimed: ClaimedStep, *, status: str, output: Any, error: str, plan_ended: bool, queue: str,
                  hand_off: bool) -> None:
    """After the step's outcome is recorded: what it leaves in memory (its ``memory`` output field, an episode,
    facts), and the plan's episode if this outcome ended the plan. Written here, unless ``hand_off``: this
    thread runs a step the success freed next, so the writing (an embedding, sealing and inserts, more than the
    rest of a step's end) goes to the ``orchestrator.step_remember`` task on the step's own queue instead,
    off that step's path; its scratchpad entries are still written here, before anything can archive the plan.
    A success with no output and a memory step leave nothing to remember. If the broker cannot take the
    message, the task's work is done here."""
    worth = _worth(status, output, claimed.agent)
    if not (worth or plan_ended):
        return
    outcome = memory.StepOutcome(claimed.key, claimed.agent, str(status), output, error)
    if not hand_off:
        _remember(claimed.id, claimed.plan_id, claimed.input, outcome, worth=worth, plan_ended=plan_ended,
                  working=True)
        return
    _remember(claimed.id, claimed.plan_id, claimed.input, outcome, worth=False, plan_ended=False,
              working=worth and isinstance(output, dict) and isinstance(output.get("memory"), dict))
    try:
        current_app.send_task(REMEMBER_TASK, args=(str(claimed.id), plan_ended), queue=queue, ignore_result=True,
                              retry=False)
    except SEND_ERRORS as exc:
        log.warning("orchestrator.memory.send_failed", extra={"step_id": str(claimed.id), "error": repr(exc)})
        _remember(claimed.id, claimed.plan_id, claimed.input, outcome, worth=worth, plan_ended=plan_ended,
                  working=False)


def step_remember(*, step_id: uuid.UUID, plan_ended: bool) -> None:
    """The ``orchestrator.step_remember`` task: what the step's recorded outcome leaves in memory (but its
    scratchpad entries: ``step_finished`` wrote them), and its plan's episode if that outcome ended it.
    Idempotent, as at-least-once delivery needs: a step has at most one episode, a fact seen again changes
    nothing, a plan is archived once."""
    found = Step.objects.filter(id=step_id).values_list(
        "plan_id", "key", "agent", "input", "status", "output", "error_message").first()
    if found is None:
        return  # its plan was deleted since
    plan_id, key, agent, step_input, status, output, error = found
    _remember(step_id, plan_id, step_input, memory.StepOutcome(key, agent, str(status), output, error),
              worth=_worth(status, output, agent), plan_ended=plan_ended, working=False)


def _worth(status: str, output: Any, agent: str) -> bool:
    """Does this outcome leave something to remember? Not a success with no output, nor a memory step's: its
    output is memory itself (what it searched, wrote or read), and remembering it again would learn back what
    was recalled, and move a fact's source to the step that merely found it."""
    return not (status == StepStatus.SUCCEEDED and output is None) and agent_get(agent).kind != "memory"


def _remember(step_id: uuid.UUID, plan_id: uuid.UUID, step_input: dict[str, Any], outcome: memory.StepOutcome, *,
              worth: bool, plan_ended: bool, working: bool) -> None:
    """Memory never fails a step: an error is logged. Gives its connection back (it may wait on an embedding
    provider)."""
    try:
        if worth or working:
            owner = memory.Owner(user_id=_owner_id(plan_id))
            if worth:
                memory.step_remember(owner=owner, plan_id=plan_id, step_input=step_input, outcome=outcome,
                                     working=working)
            else:
                memory.working_remember(owner=owner, plan_id=plan_id, outcome=outcome)
        if plan_ended:
            plan_finished(plan_id=plan_id)
    except (DomainError, AgentError, Plan.DoesNotExist) as exc:
        log.warning("orchestrator.memory.remember_failed", extra={"step_id": str(step_id),
                                                                  "error": getattr(exc, "code", repr(exc))})
    finally:
        connection.close()


def _owner_id(plan_id: uuid.UUID) -> int:
    owner = owner_of_plan(plan_id)
    if owner is None:
        raise Plan.DoesNotExist
    return owner


_owners: dict[uuid.UUID, int] = {}  # plan -> owner, remembered by this process: a plan's owner never changes


def owner_of_plan(plan_id: uuid.UUID) -> int | None:
    """The plan's owner (a user id), for memory at a step's end, the response cache and memory's ``memory``
    agent kind; None for an unknown plan. A step's path asks for it once per plan, not once per step."""
    owner = _owners.get(plan_id)
    if owner is None:
        owner = Plan.objects.filter(id=plan_id).values_list("owner_id", flat=True).first()
        if owner is not None:
            if len(_owners) >= 10_000:
                _owners.clear()
            _owners[plan_id] = owner
    return owner


def plan_finished(*, plan_id: Any) -> None:
    """The plan's episode and the end of its working memory (idempotent)."""
    plan = Plan.objects.get(id=plan_id)
    steps = [memory.StepOutcome(s.key, s.agent, s.status, None, s.error_message)
             for s in Step.objects.filter(plan=plan).order_by("queued_at", "key")]
    memory.plan_archive(owner=memory.Owner(user_id=plan.owner_id), plan_id=plan.id, request=plan.request,
                        status=plan.status, steps=steps, result=plan.result)
