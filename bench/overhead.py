"""Overhead: a plan of 200 parallel ``noop`` steps plus a join step, against a raw Celery chord of the same
shape (200 no-op tasks, one body), on one worker process (``-P threads -c 16``, DB pool 16) and the same
broker. Wall time from submission to completion: ``plan_create`` called -> ``plan.finished_at``, and chord
submitted -> the time the body task ran (both recorded by the worker, so polling adds nothing). Runs are
interleaved (ours, raw, ours, raw, ...) after one warm-up pair; medians are compared. Target ours/raw <= 1.5.
Also shown: CPU time per step of the worker process, of Postgres (all its processes) and of Redis, from
/proc: on a small shared machine the wall time follows the CPU spent per step.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from celery import chord

from bench.harness import Harness, Result, Worker

WIDTH = 200
CONCURRENCY = 16
REPEATS = 5


def ours_once(h: Harness) -> float:
    """Seconds from plan_create to the plan's finished_at."""
    from orchestrator.services import plan_create

    steps: list[dict[str, Any]] = [{"key": f"s{i}", "agent": "noop"} for i in range(WIDTH)]
    steps.append({"key": "join", "agent": "noop", "depends_on": [f"s{i}" for i in range(WIDTH)]})
    t0 = time.time()
    plan = plan_create(owner=h.user, request="bench overhead", steps=steps)
    plan = h.wait_plan(plan.id, timeout=120)
    return float(plan.finished_at.timestamp() - t0)


def raw_once(h: Harness) -> float:
    """Seconds from submitting the chord to its body running."""
    from bench.tasks import join, noop

    t0 = time.time()
    result = chord(noop.s() for _ in range(WIDTH))(join.s())
    return float(result.get(timeout=120)) - t0


def measured(h: Harness, worker: Worker, fn: Callable[[Harness], float],
             cpu: dict[str, list[float]]) -> float:
    """Run ``fn`` and add the worker's and Postgres' CPU ms per step to ``cpu``."""
    before = h.cpu_seconds(worker)
    seconds = fn(h)
    time.sleep(0.2)  # let the worker settle (acks, result writes) before reading its CPU time
    after = h.cpu_seconds(worker)
    for name in after:
        cpu[name].append((after[name] - before[name]) / (WIDTH + 1) * 1000)
    return seconds


def _join(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def run(h: Harness) -> list[Result]:
    ours: list[float] = []
    raw: list[float] = []
    cpu: dict[str, dict[str, list[float]]] = {side: {"worker": [], "postgres": [], "redis": []}
                                              for side in ("ours", "raw")}
    # The raw chord needs a result backend (the project runs without one; its own tasks ignore results).
    from celery import current_app
    from django.conf import settings

    current_app.conf.result_backend = settings.REDIS_URL
    current_app._local.__dict__.pop("backend", None)  # forget the disabled backend this thread made
    with h.worker("overhead", concurrency=CONCURRENCY, env={"DB_POOL_MAX_SIZE": str(CONCURRENCY),
                                                             "CELERY_RESULT_BACKEND": settings.REDIS_URL}) as worker:
        ours_once(h), raw_once(h)  # warm-up: imports, connections, caches
        for _ in range(REPEATS):
            ours.append(measured(h, worker, ours_once, cpu["ours"]))
            raw.append(measured(h, worker, raw_once, cpu["raw"]))
    ours_med, raw_med = statistics.median(ours), statistics.median(raw)
    med = {side: {name: statistics.median(values) for name, values in by.items()} for side, by in cpu.items()}
    samples = f"ours {_join(ours)} s; raw {_join(raw)} s"
    return [
        Result.at_most("overhead: ours / raw chord", ours_med / raw_med, "x", 1.5,
                       f"{WIDTH} no-op steps + join, -P threads -c {CONCURRENCY}, medians of {REPEATS}"),
        Result.info("overhead: ours (plan), wall", ours_med, "s", samples),
        Result.info("overhead: raw chord, wall", raw_med, "s"),
        Result.info("overhead: worker CPU per step, ours", med["ours"]["worker"], "ms",
                    f"raw chord {med['raw']['worker']:.2f} ms"),
        Result.info("overhead: Postgres CPU per step, ours", med["ours"]["postgres"], "ms",
                    f"raw chord {med['raw']['postgres']:.2f} ms"),
        Result.info("overhead: Redis CPU per step, ours", med["ours"]["redis"], "ms",
                    f"raw chord {med['raw']['redis']:.2f} ms"),
    ]
