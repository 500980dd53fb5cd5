"""The orchestrator's side of memory (memory/api.py is all it uses):

* ``step_context``: before an LLM step's agent is called, its context is assembled by memory within the
  agent's token budget (``context_budget``; see ``context_budget``); what was included,
  recalled and cut is recorded as the step's ``step.context`` event (sizes, ids and reasons, no content).
* ``step_answered``: before a success is recorded, the scratchpad entries its ``memory`` output field asks
  for, so that every step the success frees (claimed at once, on any worker) reads them.
* ``step_finished``: after a step's outcome is recorded, the facts it leaves (its ``memory`` output field's
  and those extracted from its text). Cheap when there are none, which is most steps.
* ``plan_ended``: when a plan ends, however it ends (its last step, a cancel, a failure, the reconciler), the
  ``orchestrator.plan_remember`` task (``plan_remember``) writes its steps' episodes and its own, together,
  and drops its scratchpad. A step's episode waits for the plan's end because nothing needs it sooner: recall
  leaves out the plan's own memories, and an episode written while the plan runs (an embedding, sealing and
  an insert per step) cost the step's path more than the rest of its end.

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
from common.queues import Queue
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


REMEMBER_TASK = "orchestrator.plan_remember"


def step_answered(claimed: ClaimedStep, output: Any) -> None:
    """Before a success is recorded, within the attempt's lease: the scratchpad entries its output asks for.
    Written after the record, a step it frees could start on another worker and read the scratchpad first. If
    the record then turns out stale, the entries stay: the agent did answer that, and the plan's archive, or
    the scratchpad's TTL, ends them. Nothing to do for most outputs (a dictionary lookup)."""
    if not (isinstance(output, dict) and isinstance(output.get("memory"), dict) and output["memory"].get("working")):
        return
    if not _worth(StepStatus.SUCCEEDED, output, claimed.agent):
        return
    outcome = memory.StepOutcome(claimed.key, claimed.agent, StepStatus.SUCCEEDED, output)
    try:
        memory.working_remember(owner=memory.Owner(user_id=_owner_id(claimed.plan_id)), plan_id=claimed.plan_id,
                                outcome=outcome)
    except (DomainError, Plan.DoesNotExist, TypeError, ValueError) as exc:  # not JSON: its record says so
        log.warning("orchestrator.memory.working_failed", extra={"step_id": str(claimed.id),
                                                                 "error": getattr(exc, "code", repr(exc))})
    finally:
        connection.close()


def step_finished(claimed: ClaimedStep, *, status: str, output: Any, error: str) -> None:
    """After the step's outcome is recorded: the facts it leaves (they may need an embedding request). A
    success with no output and a memory step leave nothing."""
    if not _worth(status, output, claimed.agent):
        return
    outcome = memory.StepOutcome(claimed.key, claimed.agent, str(status), output, error)
    try:
        memory.step_remember(owner=memory.Owner(user_id=_owner_id(claimed.plan_id)), plan_id=claimed.plan_id,
                             outcome=outcome)
    except (DomainError, AgentError, Plan.DoesNotExist) as exc:
        log.warning("orchestrator.memory.remember_failed", extra={"step_id": str(claimed.id),
                                                                  "error": getattr(exc, "code", repr(exc))})
    finally:
        connection.close()


def plan_ended(plan_id: uuid.UUID) -> None:
    """Called by the writer of a plan's terminal status, inside its transaction: once that commits, the
    ``orchestrator.plan_remember`` task archives the plan (or this thread does, if the broker cannot take the
    message)."""

    def send() -> None:
        try:
            current_app.send_task(REMEMBER_TASK, args=(str(plan_id),), queue=Queue.AGENTS, ignore_result=True,
                                  retry=False)
        except SEND_ERRORS as exc:
            log.warning("orchestrator.memory.send_failed", extra={"plan_id": str(plan_id), "error": repr(exc)})
            plan_remember(plan_id=plan_id)

    transaction.on_commit(send, robust=True)  # the plan has ended whatever happens to its memory


def plan_remember(*, plan_id: uuid.UUID | None = None, step_id: uuid.UUID | None = None) -> None:
    """The ``orchestrator.plan_remember`` task: the plan's step episodes, its own episode and the end of its
    scratchpad (``memory.plan_archive``); the plan is given, or found by one of its steps. Idempotent, as
    at-least-once delivery needs. Memory never fails a plan: an error is logged. Gives its connection back (it
    may wait on an embedding provider)."""
    try:
        lookup = {"id": plan_id} if plan_id is not None else {"steps__id": step_id}
        plan = Plan.objects.only("id", "owner_id", "request", "status", "result").get(**lookup)
        plan_id = plan.id
        steps = [memory.StepOutcome(key, agent, str(status), output, error, step_input)
                 for key, agent, status, output, error, step_input in Step.objects.filter(plan_id=plan_id)
                 .order_by("queued_at", "key").values_list("key", "agent", "status", "output", "error_message",
                                                           "input")]
        memory.plan_archive(owner=memory.Owner(user_id=plan.owner_id), plan_id=plan.id, request=plan.request,
                            status=plan.status, steps=steps, result=plan.result,
                            remember=frozenset(s.key for s in steps if _worth(s.status, s.output, s.agent)))
    except Plan.DoesNotExist:
        return  # deleted since
    except DomainError as exc:
        log.warning("orchestrator.memory.archive_failed", extra={"plan_id": str(plan_id), "error": exc.code})
    finally:
        connection.close()


def _worth(status: str, output: Any, agent: str) -> bool:
    """Does this outcome leave something to remember? Not a success with no output, nor a memory step's: its
    output is memory itself (what it searched, wrote or read), and remembering it again would learn back what
    was recalled, and move a fact's source to the step that merely found it. An agent since removed from the
    configuration still has its outcome remembered."""
    if status == StepStatus.SUCCEEDED and output is None:
        return False
    try:
        return agent_get(agent).kind != "memory"
    except AgentError:
        return True


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
