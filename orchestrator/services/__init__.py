"""Every write to plans and steps. Views, tasks, commands and other apps call what this package exports.

Modules, along their seams: ``transitions`` (the one writer of statuses, the plan lock, the event record),
``readiness`` (the one definition of ready and doomed), ``scheduling`` (what runs next), ``budgets`` (gates,
caps, totals), ``dispatch`` (messages to the broker), ``steps`` (claim, run, record), ``leases`` (the
heartbeat), ``plans`` (create, plan, cancel, approvals), ``reconcile`` (repairs), ``growth`` (steps spawned
while a plan runs), ``resume`` (retrying a failed or cancelled plan).

Concurrency rules (read these before changing anything here):

1. ``transitions.steps_transition`` is the only writer of ``Step.status``. It is one statement: a conditional
   UPDATE that moves a step only from the source statuses its caller names (each move one the state machine,
   ``states.STEP_TRANSITIONS``, allows) and, when ``attempt`` is given, only if that attempt is still current,
   and that appends the step's event. A duplicate or stale request matches no row and is a logged no-op:
   that makes task delivery idempotent.
2. Whatever decides what runs next (a step ending, an approval resolved, cancel, the reconciler's repairs)
   holds the plan's row lock (``SELECT ... FOR NO KEY UPDATE``), so two dependencies finishing at once
   cannot both miss that their join is ready, the last two steps cannot both miss that the plan is done,
   and budget checks see every reservation. (NO KEY: the claim's event row references the plan and takes
   FOR KEY SHARE on it, which must not wait for a step's end.) The claim (queued -> running) needs no plan
   lock: its conditional UPDATE races only with cancel and the reconciler's requeue, both of which move
   only ``queued`` steps at a known attempt, so the step's row lock decides each race.
3. Lock order: approval, then plan, then the owner's budget row, then the organisation's budget row (only
   when it has limits), then steps. The reconciler locks one plan at a time. Messages go out after commit
   (``transaction.on_commit``); if one is lost, the reconciler sends it again, and the attempt number makes
   the copy harmless.
4. No transaction is open, and no connection held, while an agent runs: claim (one statement), call,
   record in a short transaction. The attempt's lease is renewed by the worker's heartbeat while it runs.
5. Nothing that validates configuration runs inside a transaction: agents.yaml, approvals.yaml and the
   templates are validated when the process starts (``manage.py check`` too).
6. A plan grows (``growth``: dynamic rules, an output's ``spawn``, a step's ``fan_out``) only under the plan
   lock, in the transaction that records the success of the step that spawns: everything spawned is
   validated whole against the plan as it is before anything is written, then inserted in one statement
   (with the joins of the spawning step's pending dependents) or refused whole by failing that step. So a
   spawned step is never seen half-added, and readiness (run in the same transaction) picks it up at once.
7. Retrying a plan (``resume``) moves its unsuccessful steps back to ``pending`` and the plan to ``running``
   under the plan lock; a late result of an earlier attempt finds its step no longer ``running`` (or at a
   newer attempt) and is discarded like any stale result. Succeeded steps are never moved.
"""

from orchestrator.services.plans import approval_event, plan_cancel, plan_create, plan_generate, step_gate_resolved
from orchestrator.services.reconcile import reconcile
from orchestrator.services.resume import plan_retry
from orchestrator.services.scheduling import plan_advance
from orchestrator.services.steps import (
    ClaimedStep,
    step_claim,
    step_fail,
    step_output_chunk,
    step_retrying,
    step_run,
    step_succeed,
)
from orchestrator.services.transitions import events_record, plan_locked, steps_transition

__all__ = [
    "ClaimedStep",
    "approval_event",
    "events_record",
    "plan_advance",
    "plan_cancel",
    "plan_create",
    "plan_generate",
    "plan_locked",
    "plan_retry",
    "reconcile",
    "step_claim",
    "step_fail",
    "step_gate_resolved",
    "step_output_chunk",
    "step_retrying",
    "step_run",
    "step_succeed",
    "steps_transition",
]
