"""I/O-bound: a plan of 200 parallel steps, each an ``http`` agent POSTing to a local endpoint (a
ThreadingHTTPServer in the bench process, 127.0.0.1) that answers after 1 s, on ONE worker process
(``-P threads -c 200``, DB pool of 20 connections). Makespan = plan.finished_at - plan.started_at
(started_at is set when the plan is stored, before its steps are queued). Side by side, interleaved, the raw
Celery counterpart on the same worker: a chord of 200 tasks that each POST once with httpx, and a body
(makespan: submitted -> body ran). Median of 5 runs each after a warm-up. Targets: ours <= 1.4 s, as the issue
states it, and the same line as a ratio to the raw chord of the same minutes, <= 1.08x (1.4 s against the 1.3 s
raw Celery took in the issue's table), which does not depend on the machine. Also shown: the worker's CPU per step
(per task for the raw chord): the workload is bound by that CPU under the worker's one GIL.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench.harness import Harness, Result, Worker
from bench.slow_http import slow_endpoint

WIDTH = 200
LATENCY = 1.0
CONCURRENCY = 200
DB_POOL = 20  # connections of the worker; with the bench's own 10, well under Postgres' 100
REPEATS = 5  # medians of 5, as the performance issue measured its table
# The 1.4 s line as a ratio: raw Celery's own chord took 1.3 s on the machine and 1.3-2.1 s on the
# machines this ran on since, so an absolute time judges the machine as much as the code.
RATIO_TARGET = 1.4 / 1.3


@dataclass
class Run:
    makespan: float  # plan.finished_at - plan.started_at
    last_start: float  # the last step's claim, from plan.started_at
    worker_cpu: float  # CPU seconds the worker used for this plan


def once(h: Harness, worker: Worker) -> Run:
    from orchestrator.services import plan_create

    steps = [{"key": f"call{i}", "agent": "bench_slow_http", "input": {"i": i}} for i in range(WIDTH)]
    cpu = h.cpu_seconds(worker)["worker"]
    plan = plan_create(owner=h.user, request="bench io-bound", steps=steps)
    plan = h.wait_plan(plan.id, timeout=120)
    h.settle()  # every message handled (acks, no-op claims) before reading the worker's CPU time
    start = plan.started_at.timestamp()
    last_start = max(started for _, started, _ in h.steps_timing(plan.id)) - start
    return Run(plan.finished_at.timestamp() - start, last_start, h.cpu_seconds(worker)["worker"] - cpu)


def raw_once(h: Harness, worker: Worker, url: str) -> Run:
    from celery import chord

    from bench.tasks import join, post

    cpu = h.cpu_seconds(worker)["worker"]
    t0 = time.time()
    result = chord(post.s(url, i) for i in range(WIDTH))(join.s())
    makespan = float(result.get(timeout=120)) - t0
    h.settle()
    return Run(makespan, 0.0, h.cpu_seconds(worker)["worker"] - cpu)  # (its tasks' start times are not kept)


def run(h: Harness) -> list[Result]:
    from django.conf import settings

    from bench.tasks import use_result_backend

    use_result_backend()  # the raw chord needs one (the project has none)
    with slow_endpoint(LATENCY) as url:
        h.use_agents("io_bound", f"""
agents:
  bench_slow_http:
    kind: http
    url: {url}
    timeout: 30
    allow_private: true  # the SSRF guard refuses loopback otherwise
""")
        with h.worker("io-bound", concurrency=CONCURRENCY, env={"DB_POOL_MAX_SIZE": str(DB_POOL),
                                                                "CELERY_RESULT_BACKEND": settings.REDIS_URL}) as worker:
            once(h, worker), raw_once(h, worker, url)  # warm-up
            runs, raws = [], []
            for _ in range(REPEATS):
                runs.append(once(h, worker))
                raws.append(raw_once(h, worker, url))
    median = statistics.median(run.makespan for run in runs)
    raw_median = statistics.median(raw.makespan for raw in raws)
    return [
        Result.at_most("I/O-bound: 200 x 1 s HTTP calls, makespan", median, "s", 1.4,
                       f"one worker -P threads -c {CONCURRENCY}, DB pool {DB_POOL}; runs "
                       + ", ".join(f"{run.makespan:.2f}" for run in runs) + " s"),
        Result.info("I/O-bound: raw Celery chord, makespan", raw_median, "s",
                    "runs " + ", ".join(f"{raw.makespan:.2f}" for raw in raws) + " s"),
        Result.at_most("I/O-bound: ours / raw chord", median / raw_median, "x", RATIO_TARGET,
                       "medians, interleaved runs; the 1.4 s line against the issue's raw chord of 1.3 s"),
        Result.info("I/O-bound: last step claimed after", statistics.median(run.last_start for run in runs), "s",
                    "from plan.started_at: how long it took to get all 200 calls going"),
        Result.info("I/O-bound: worker CPU per step", statistics.median(run.worker_cpu for run in runs)
                    / WIDTH * 1000, "ms", "one process: its threads share one GIL"),
        Result.info("I/O-bound: raw chord, worker CPU per task", statistics.median(raw.worker_cpu for raw in raws)
                    / WIDTH * 1000, "ms", "the same worker: the chord's tasks, its join and their results"),
    ]
