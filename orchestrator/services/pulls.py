"""A free worker thread pulls: it claims the step of its delivery's queue that has been queued longest, ahead of
that step's message (``steps.step_run``). So a wide fan-out runs as fast as the threads can claim from Postgres,
not at the pace of the broker's deliveries. Pulling is a shortcut only: every step still has its message, and
a step not pulled runs on it. The database decides as always: a pull is a conditional claim
(``transitions.step_claimed_oldest``).

What this process remembers between pulls, none of it shared with other processes:
- per queue, until when no thread pulls again (a pull found the queue empty);
- per agent, where the next pull resumes (after the step it took last);
- the (id, attempt) of each step it pulled, until that step's message comes: the delivery then claims nothing
  without asking the database.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

from celery.worker import state as worker_state
from django.conf import settings

from agents.api import agent_list
from orchestrator.services.durable import briefly
from orchestrator.services.transitions import PULL_START, Moved, step_claimed_oldest

# Per queue, the time.monotonic() until which this process's threads do not pull (a pull found it empty).
_pull_idle_until: dict[str, float] = {}
# Per agent, the (queued_at, id) of the step this process pulled last: the next pull resumes after it
# (transitions.steps_transition, ``oldest_of``). A step queued behind it (its transaction began earlier but
# committed later) is not pulled by this process: it runs on its own message, as every step can.
_pull_after: dict[str, tuple[datetime, uuid.UUID]] = {}
# The (id, attempt) of the steps this process pulled whose message has not come yet. Its claim at that attempt
# could not succeed: the step is running or past it at that attempt, and a step queued again has a new attempt.
# In a wide fan-out nearly every message comes after its step was pulled; skipping the statement saved 0.4-1.0 ms
# of the worker's CPU and 0.1-0.5 ms of Postgres' per step (bench/RESULTS.md). The oldest are forgotten past
# PULLED_KEPT (their messages were lost, or went to another process): such a delivery asks the database.
_pulled: dict[tuple[uuid.UUID, int], bool] = {}  # a set that keeps its order: the oldest go first
_pulled_lock = threading.Lock()
PULLED_KEPT = 10_000


def pulled_here(step_id: uuid.UUID, attempt: int) -> bool:
    """Did this process pull this step at this attempt (and this is the first delivery to ask)?"""
    with _pulled_lock:
        return _pulled.pop((step_id, attempt), False)


def claim_oldest(queue: str | None, worker: str) -> Moved | None:
    """The step of ``queue`` queued longest, claimed for ``worker``; None without a queue, when the worker is
    stopping, or when nothing of that queue is queued. Once a pull finds the queue empty, no thread of this
    process asks again for ORCH_PULL_IDLE seconds: a step queued meanwhile runs on its own message, as every
    step can. Without the pause, every step's end would ask once more: in a plan of 200 parallel calls that
    is 200 empty pulls, a tenth of the worker's CPU, while the calls still being started wait for the GIL; and
    after a plan's end each leftover message (a no-op claim) would ask too. While steps are queued faster
    than their messages arrive (a wide fan-out), pulls find them, so the pause never starts."""
    if queue is None or _stopping() or _pull_idle_until.get(queue, 0.0) > time.monotonic():
        return None
    agents = [spec.name for spec in agent_list() if spec.queue == queue]
    if not agents:
        return None
    step = briefly(lambda: step_claimed_oldest(agents=agents, worker=worker, after=_pull_after), what="claim")
    if step is None:
        _pull_idle_until[queue] = time.monotonic() + settings.ORCH_PULL_IDLE
        return None
    with _pulled_lock:
        _pulled[(step.id, step.attempt)] = True
        if len(_pulled) > PULLED_KEPT:
            del _pulled[next(iter(_pulled))]
    if step.queued_at is not None and (step.queued_at, step.id) > _pull_after.get(step.agent, PULL_START):
        _pull_after[step.agent] = (step.queued_at, step.id)  # two threads at once: at worst one rescan
    return step


def _stopping() -> bool:
    """The worker this thread runs in is shutting down (Celery's warm or cold shutdown)."""
    # Celery sets these to an exit code (0 for a plain warm shutdown), so only None and False mean "running".
    return any(flag is not None and flag is not False for flag in (worker_state.should_stop,
                                                                    worker_state.should_terminate))
