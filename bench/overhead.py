"""Overhead: plans of 200, 1,000 and 5,000 parallel ``noop`` steps plus a join step, against a raw Celery
chord of the same shape (N no-op tasks, one body), on one worker process (``-P threads -c 16``, DB pool 16)
and the same broker. Wall time from submission to completion: ``plan_create`` called -> ``plan.finished_at``,
and chord submitted -> the time the body task ran (both recorded by the worker, so polling adds nothing).
Runs are interleaved (ours, raw, ours, raw, ...) after one warm-up pair, and so are the widths (200, 1,000, 5,000,
200, ...): the flatness line compares sizes measured in the same minutes, on tables of the same size. Medians of
5 runs of each are compared, as the performance issue measured its table (with 2 at 5,000, one slow minute moved
the flatness line by 10 %; run one width after another, the 200-step runs of two whole runs fell in fast minutes).
Targets: ours/raw <= 1.5 at 200 and <= 1.8 at 1,000 and 5,000, and a flat cost per step: wall per step at 5,000
within 10 % of that at 200. Also shown: CPU time per step of the worker process, of Postgres (all its processes)
and of Redis, from /proc: on a small shared machine the wall time follows the CPU spent per step.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from celery import chord

from bench.harness import Harness, Result, Worker

WIDTHS = {int(k): int(v) for k, v in (pair.split(":") for pair in os.environ.get(
    "BENCH_WIDTHS", "200:5,1000:5,5000:5").split(","))}  # steps: runs of each side (BENCH_WIDTHS to change)
CONCURRENCY = 16


def ours_once(h: Harness, width: int) -> float:
    """Seconds from plan_create to the plan's finished_at."""
    from django.conf import settings

    from orchestrator.services import plan_create

    steps: list[dict[str, Any]] = [{"key": f"s{i}", "agent": "noop"} for i in range(width)]
    steps.append({"key": "join", "agent": "noop", "depends_on": [f"s{i}" for i in range(width)]})
    settings.ORCH_MAX_STEPS = max(settings.ORCH_MAX_STEPS, width + 1)
    t0 = time.time()
    plan = plan_create(owner=h.user, request="bench overhead", steps=steps)
    plan = h.wait_plan(plan.id, timeout=600)
    return float(plan.finished_at.timestamp() - t0)


def raw_once(h: Harness, width: int) -> float:
    """Seconds from submitting the chord to its body running."""
    from bench.tasks import join, noop

    t0 = time.time()
    result = chord(noop.s() for _ in range(width))(join.s())
    return float(result.get(timeout=600)) - t0


def measured(h: Harness, worker: Worker, fn: Callable[[Harness, int], float], width: int,
             cpu: dict[str, list[float]]) -> float:
    """Run ``fn`` and add the worker's and Postgres' CPU ms per step to ``cpu``."""
    before = h.cpu_seconds(worker)
    seconds = fn(h, width)
    h.settle()  # every message handled (acks, result writes, no-op claims) before reading the CPU time
    after = h.cpu_seconds(worker)
    for name in after:
        cpu[name].append((after[name] - before[name]) / (width + 1) * 1000)
    return seconds


def _join(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def run(h: Harness) -> list[Result]:
    from django.conf import settings

    from bench.tasks import use_result_backend

    use_result_backend()  # the raw chord needs one (the project runs without one)
    results: list[Result] = []
    per_step: dict[int, float] = {}
    with h.worker("overhead", concurrency=CONCURRENCY, env={
            "DB_POOL_MAX_SIZE": str(CONCURRENCY), "CELERY_RESULT_BACKEND": settings.REDIS_URL,
            "ORCH_MAX_STEPS": str(max(WIDTHS) + 1)}) as worker:
        ours_once(h, 200), raw_once(h, 200)  # warm-up: imports, connections, caches
        ours: dict[int, list[float]] = {width: [] for width in WIDTHS}
        raw: dict[int, list[float]] = {width: [] for width in WIDTHS}
        cpu: dict[int, dict[str, dict[str, list[float]]]] = {
            width: {side: {"worker": [], "postgres": [], "redis": []} for side in ("ours", "raw")}
            for width in WIDTHS}
        for round_ in range(max(WIDTHS.values())):  # widths interleaved too: a slow minute hits every width
            for width, repeats in WIDTHS.items():
                if round_ < repeats:
                    ours[width].append(measured(h, worker, ours_once, width, cpu[width]["ours"]))
                    raw[width].append(measured(h, worker, raw_once, width, cpu[width]["raw"]))
    for width, repeats in WIDTHS.items():
        ours_med, raw_med = statistics.median(ours[width]), statistics.median(raw[width])
        per_step[width] = ours_med / (width + 1) * 1000
        med = {side: {name: statistics.median(values) for name, values in by.items()}
               for side, by in cpu[width].items()}
        results += [
            Result.at_most(f"overhead {width}: ours / raw chord", ours_med / raw_med, "x",
                           1.5 if width <= 200 else 1.8,
                           f"{width} no-op steps + join, -P threads -c {CONCURRENCY}, medians of {repeats}; "
                           f"ours {_join(ours[width])} s; raw {_join(raw[width])} s"),
            Result.info(f"overhead {width}: ours, wall per step", per_step[width], "ms",
                        f"raw chord {raw_med / (width + 1) * 1000:.2f} ms"),
            Result.info(f"overhead {width}: CPU per step, ours (worker + Postgres + Redis)",
                        sum(med["ours"].values()), "ms",
                        f"worker {med['ours']['worker']:.2f}, Postgres {med['ours']['postgres']:.2f}, "
                        f"Redis {med['ours']['redis']:.2f}; raw chord {sum(med['raw'].values()):.2f} "
                        f"(worker {med['raw']['worker']:.2f}, Redis {med['raw']['redis']:.2f})"),
        ]
    largest, smallest = max(WIDTHS), min(WIDTHS)
    results.append(Result.at_most(f"overhead: wall per step at {largest} / at {smallest}",
                                  per_step[largest] / per_step[smallest], "x", 1.1,
                                  "flat cost per step as plans grow"))
    return results
