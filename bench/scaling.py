"""Horizontal scaling: one I/O-bound plan of 1,000 independent steps, each an ``http`` agent POSTing to a
local endpoint (a ThreadingHTTPServer in the bench process) that answers after 0.5 s, run by 1, 2 and 4
agent worker processes on the same ``agents`` queue, each ``-P threads -c 25`` with a DB pool of 8.
Per-process concurrency is the bound here on purpose (25 calls in flight per process), so the ideal is
N x 50 steps/s; what it falls short by is the cost of claiming, recording and dispatching on this machine's
2 shared cores (Postgres, Redis, the workers and the bench process all on them). The same
1,000 steps are also run as 10 plans of 100 at once: a plan's steps record their ends under that plan's
row lock, so one wide plan and many plans can scale differently. Makespan = last plan.finished_at - first
plan.started_at; steps/s = 1,000 / makespan; one run per size after a small warm-up.
"""

from __future__ import annotations

import os

from bench.harness import Harness, Result
from bench.slow_http import slow_endpoint

STEPS = 1000
LATENCY = 0.5
CONCURRENCY = 25
DB_POOL = 8
SIZES = (1, 2, 4)


def _plans(h: Harness, count: int, width: int) -> float:
    """Run ``count`` plans of ``width`` parallel steps at once; the makespan of them all, in seconds."""
    from orchestrator.services import plan_create

    steps = [{"key": f"call{i}", "agent": "bench_scaling_http", "input": {"i": i}} for i in range(width)]
    ids = [plan_create(owner=h.user, request="bench scaling", steps=steps).id for _ in range(count)]
    plans = [h.wait_plan(plan_id, timeout=300) for plan_id in ids]
    return float((max(p.finished_at for p in plans) - min(p.started_at for p in plans)).total_seconds())


def run(h: Harness) -> list[Result]:
    from django.conf import settings

    settings.ORCH_MAX_STEPS = max(settings.ORCH_MAX_STEPS, STEPS)  # this process validates the plan
    os.environ["ORCH_MAX_STEPS"] = str(settings.ORCH_MAX_STEPS)
    makespans: dict[int, float] = {}
    spread: dict[int, float] = {}  # the same 1,000 steps as 10 plans of 100
    with slow_endpoint(LATENCY) as url:
        h.use_agents("scaling", f"""
agents:
  bench_scaling_http:
    kind: http
    url: {url}
    timeout: 60
    allow_private: true
""")
        for size in SIZES:
            workers = [h.start_worker(f"scaling-{size}-{n}", concurrency=CONCURRENCY,
                                      env={"DB_POOL_MAX_SIZE": str(DB_POOL)}) for n in range(size)]
            try:
                _plans(h, 1, 50)  # warm-up: connections, imports, the registry
                makespans[size] = _plans(h, 1, STEPS)
                spread[size] = _plans(h, 10, STEPS // 10)
            finally:
                for worker in workers:
                    h.stop_worker(worker)
    one = makespans[1]
    results = []
    for size in SIZES:
        ideal = size * CONCURRENCY / LATENCY
        results.append(Result.info(
            f"scaling: 1,000 x {LATENCY} s HTTP steps, {size} worker process{'es' if size > 1 else ''}",
            STEPS / makespans[size], "steps/s",
            f"makespan {makespans[size]:.1f} s; ideal {ideal:.0f} steps/s; speed-up x{one / makespans[size]:.2f}"))
    for size in SIZES:
        results.append(Result.info(
            f"scaling: 10 plans x 100 of the same steps, {size} worker process{'es' if size > 1 else ''}",
            STEPS / spread[size], "steps/s",
            f"makespan {spread[size]:.1f} s; speed-up x{spread[1] / spread[size]:.2f}"))
    return results
