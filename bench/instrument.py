"""Timers around the orchestrator's service functions in a worker (``BENCH_PROFILE=1``): wall-clock time, or
with ``BENCH_CPU=1`` the calling thread's own CPU time (``time.thread_time``: what the call costs the worker's one
GIL, without the waits for the network, a pooled connection or the GIL itself).

The harness adds ``-I bench.instrument`` to workers when BENCH_PROFILE is set (and runs py-spy on them).
Once the worker is ready, the functions below are wrapped; at shutdown a table of calls, total and mean
time is written to ``$BENCH_TIMINGS``. ``plan lock held`` is from the plan row lock being taken
(``plan_locked`` or ``plan_of_step_locked`` returned) to its transaction's commit. The services import each
other's functions by name, so each is wrapped in every services module that names it: every call is timed
once, through the module it is called from. The agent side is timed too: ``agent_run``, the breaker's admission
(``breaker_admit``, a Redis round trip) and an ``http`` agent's own call (``HttpAgent.run``); ``claim`` is a
delivery's claim with its retry wrapper. Nothing here changes behaviour.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutdown

SERVICES = ["step_claim", "_step_end", "steps_transition", "events_record", "advance", "steps_ready",
            "graph_refresh", "plan_settled", "gate", "totals_add", "finish", "send_steps", "plan_advance",
            "durably", "agent_run", "_succeed_shared", "plan_followup", "_run_claimed", "_release", "_claim_oldest",
            "step_context", "step_answered", "step_finished", "_call_agent"]
LOCKS = ["plan_locked", "plan_of_step_locked"]
_totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_mutex = threading.Lock()
_clock = time.thread_time if os.environ.get("BENCH_CPU") else time.perf_counter


def _add(name: str, seconds: float) -> None:
    with _mutex:
        _totals[name][0] += 1
        _totals[name][1] += seconds


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = _clock()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, _clock() - t0)
    return wrapper


def _lock_timed(locker: Callable[..., Any]) -> Callable[..., Any]:
    from django.db import transaction

    @functools.wraps(locker)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        plan = locker(*args, **kwargs)
        taken = _clock()
        transaction.on_commit(lambda: _add("plan lock held", _clock() - taken))
        return plan
    return wrapper


@worker_ready.connect
def install(**_: Any) -> None:
    from orchestrator import tasks
    from orchestrator.services import (
        budgets,
        dispatch,
        memory,
        plans,
        readiness,
        reconcile,
        scheduling,
        steps,
        transitions,
    )

    wrapped: dict[str, Callable[..., Any]] = {}
    for module in (transitions, readiness, scheduling, budgets, dispatch, steps, plans, reconcile, memory):
        for name in SERVICES + LOCKS:
            original = vars(module).get(name)
            if original is None:
                continue
            if name not in wrapped:
                inner = _lock_timed(original) if name in LOCKS else original
                wrapped[name] = _timed(name, inner)
            setattr(module, name, wrapped[name])
    from agents import limits
    from agents.kinds.http import HttpAgent

    limits.breaker_admit = _timed("breaker_admit", limits.breaker_admit)  # agents.api calls it through the module
    HttpAgent.run = _timed("HttpAgent.run", HttpAgent.run)  # type: ignore[method-assign]
    steps.briefly = _timed("claim", steps.briefly)  # type: ignore[attr-defined]  # its one use: the claim
    run_step = tasks.run_step.run
    tasks.run_step.run = _timed("run_step", run_step)  # type: ignore[method-assign]


@worker_shutdown.connect
def dump(**_: Any) -> None:
    path = os.environ.get("BENCH_TIMINGS")
    if not path:
        return
    lines = [f"{'function':<20} {'calls':>7} {'total s':>9} {'mean ms':>9}"]
    for name, (calls, total) in sorted(_totals.items(), key=lambda item: -item[1][1]):
        lines.append(f"{name:<20} {int(calls):>7} {total:>9.3f} {total / calls * 1000:>9.2f}")
    Path(path).write_text("\n".join(lines) + "\n")
