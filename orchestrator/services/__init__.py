"""Every write to plans and steps. Views, tasks, commands and other apps call what this package exports.

Modules, along their seams: ``transitions`` (the one writer of statuses, the plan lock, the event record),
``readiness`` (the one definition of ready and doomed), ``scheduling`` (what runs next), ``budgets`` (gates,
caps, totals), ``dispatch`` (messages to the broker), ``steps`` (claim, run, record), ``durable`` (database
writes retried through an outage), ``leases`` (the heartbeat), ``plans`` (create, plan, cancel, approvals),
``reconcile`` (repairs), ``growth`` (steps spawned while a plan runs), ``resume`` (retrying a failed or cancelled
plan), ``edits`` (editing a running plan, re-running from a step).

Concurrency rules (read these before changing anything here):

1. ``transitions.steps_transition`` is the only writer of ``Step.status``. It is one statement: a conditional
   UPDATE that moves a step only from the source statuses its caller names (each move one the state machine,
   ``states.STEP_TRANSITIONS``, allows) and, when ``attempt`` is given, only if that attempt is still current,
   and that appends the step's event. A duplicate or stale request matches no row and is a logged no-op:
   that makes task delivery idempotent.
2. The plan's row lock has two modes. Whatever decides what runs next from the plan as a whole (a failure, an
   approval resolved, cancel, growth, edits, retries, the reconciler's repairs, the follow-up of a success
   that freed a step that needs a decision: a budget, a cap, an approval) holds it exclusively (``SELECT ...
   FOR NO KEY UPDATE``), so budget checks see every reservation and two deciders never miss each other. The
   common success (a step that spent nothing and cannot grow: ``steps._succeed_shared``) is one statement that
   takes it FOR SHARE, records the success and its event, and decrements its dependents' ``waiting_on``
   (``readiness``): step ends of one plan run side by side, and the exclusive holders exclude them all. A
   dependent's count reaches 0 in exactly one statement (row locks serialize the decrements), and only that
   caller gates and queues it (a wide dependent's count is split over slot rows, ``StepSlot``: each end
   decrements its slot, and the one end that empties a slot decrements the dependent's count, so row locks
   still serialize every decrement that matters, SLOTS rows side by side; ``readiness``): in the same short
   transaction, still under the shared lock, when the gate needs no decision over the whole plan (no
   estimate to reserve against a budget or cap, no approval policy that stops it, no owner cap:
   ``scheduling.advance_shared``), else after its commit under the exclusive lock. A success after which no
   dependent waits checks, after its commit, whether anything of
   the plan is left open: of two last steps ending at once, at least one sees the other. The statement waits
   for its FOR SHARE inside its own snapshot: rows an exclusive holder changed meanwhile are re-read (Postgres
   re-checks updated rows), and a dependent it added meanwhile is noticed (``Moved.recount``) and the counts
   recomputed. (NO KEY: the claim's event row references the plan and takes FOR KEY SHARE on it, which must
   not wait for a step's end.) The claim (queued -> running) needs no plan lock: its conditional UPDATE
   races only with cancel and the reconciler's requeue, both of which move only ``queued`` steps at a known
   attempt, so the step's row lock decides each race. A worker whose success frees a step of its own queue
   claims it in the transaction that queues it instead (``scheduling.Here``; of several, the one with the
   longest chain of dependents after it, ``Step.rank``), and no
   message is sent for it: if that worker dies before running it, its lease lapses like any running step's.
   A thread with nothing left to run claims the step of its delivery's queue queued longest
   (``transitions.step_claimed_oldest``: the same conditional claim, its row chosen among each of the queue's
   agents' oldest ``FOR UPDATE SKIP LOCKED`` so that threads pulling at once take different steps, after the
   one the process took last, so a step queued behind that mark is left to its message); the step's
   own message then claims nothing. After a pull that found nothing, the process does not pull that queue for
   ORCH_PULL_IDLE. Every step still gets its message, so a wide plan is spread over all workers and none is
   stranded if a puller dies.
3. Lock order: approval, then plan, then the owner's budget row, then the organisation's budget row (only
   when it has limits), then steps. The reconciler locks one plan at a time. Messages go out after commit
   (``transaction.on_commit``); if one is lost, the reconciler sends it again, and the attempt number makes
   the copy harmless.
4. No transaction is open, and no connection held, while an agent runs: claim (one statement), call,
   record in a short transaction. The attempt's lease is renewed by the worker's heartbeat while it runs.
5. Nothing that validates configuration runs inside a transaction: agents.yaml, approvals.yaml and the
   templates are validated when the process starts (``manage.py check`` too).
6. A plan grows (``growth``: dynamic rules, an output's ``spawn``, a step's ``fan_out``) only under the
   exclusive plan lock, in the transaction that records the success of the step that spawns (a step that can
   grow is marked ``grows`` and never takes the shared path): everything spawned is validated whole against
   the plan as it is before anything is written, then inserted in one statement (with the joins of the
   spawning step's pending dependents) or refused whole by failing that step. So a spawned step is never seen
   half-added. Every change of structure ends with a full ``scheduling.advance``, which recomputes the
   plan's counts (``readiness.graph_refresh``) before it looks for ready steps.
7. Retrying a plan (``resume``) moves its unsuccessful steps back to ``pending`` and the plan to ``running``
   under the plan lock; a late result of an earlier attempt finds its step no longer ``running`` (or at a
   newer attempt) and is discarded like any stale result. Succeeded steps are never moved.
8. Editing a plan and re-running from a step (``edits``) hold the plan lock, then lock the step rows they touch
   (plan, then steps) and read their status under it: only ``pending`` steps are edited, and a re-run refuses
   while anything downstream is queued, running or waiting. A succeeded step goes back to ``pending`` only
   through a re-run, which resets everything downstream of it in the same transaction. Both end with a whole
   ``advance``. ``Plan.version`` counts structural changes (edits, growth, re-runs): an edit made against an
   older version is refused (``plan.edit_conflict``).
"""

from orchestrator.services.edits import plan_edit, step_rerun
from orchestrator.services.memory import plan_remember
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
    "plan_edit",
    "plan_generate",
    "plan_locked",
    "plan_remember",
    "plan_retry",
    "reconcile",
    "step_claim",
    "step_fail",
    "step_gate_resolved",
    "step_output_chunk",
    "step_rerun",
    "step_retrying",
    "step_run",
    "step_succeed",
    "steps_transition",
]
