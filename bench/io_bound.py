"""I/O-bound: a plan of 200 parallel steps, each an ``http`` agent POSTing to a local endpoint (a
ThreadingHTTPServer in the bench process, 127.0.0.1) that answers after 1 s, on ONE worker process
(``-P threads -c 200``, DB pool of 20 connections). Makespan = plan.finished_at - plan.started_at
(started_at is set when the plan is stored, before its steps are queued). Side by side, interleaved, the raw
Celery counterpart on the same worker: a chord of 200 tasks that each POST once with httpx, and a body
(makespan: submitted -> body ran). Median of 5 runs each after a warm-up. Targets: ours <= 1.4 s, as the issue
states it, and the same line as a ratio to the raw chord of the same minutes, <= 1.08x (1.4 s against the 1.3 s
raw Celery took in the issue's table), which does not depend on the machine. Also shown, for both: when the 200th
call reached the endpoint (the makespan is that, the 1 s answer and the end: the line is won or lost in how fast
the calls start), and the worker's CPU and context switches per step (per task for the raw chord): the starts are
bound by that CPU under the worker's one GIL, and every blocking round trip a start makes costs its thread a
switch out and a wait for the GIL to come back.
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
    makespan: float  # plan.finished_at - plan.started_at (the raw chord: submitted -> body ran)
    last_call: float  # when the last call reached the endpoint, from the same start
    worker_cpu: float  # CPU seconds the worker used for this plan
    switches: int  # the worker's context switches for this plan


def once(h: Harness, worker: Worker, arrivals: list[float]) -> Run:
    from orchestrator.services import plan_create

    steps = [{"key": f"call{i}", "agent": "bench_slow_http", "input": {"i": i}} for i in range(WIDTH)]
    arrivals.clear()
    cpu, switches = h.cpu_seconds(worker)["worker"], h.context_switches(worker)
    plan = plan_create(owner=h.user, request="bench io-bound", steps=steps)
    plan = h.wait_plan(plan.id, timeout=120)
    h.settle()  # every message handled (acks, no-op claims) before reading the worker's CPU time
    start = plan.started_at.timestamp()
    return Run(plan.finished_at.timestamp() - start, max(arrivals) - start, h.cpu_seconds(worker)["worker"] - cpu,
               h.context_switches(worker) - switches)


def raw_once(h: Harness, worker: Worker, url: str, arrivals: list[float]) -> Run:
    from celery import chord

    from bench.tasks import join, post

    arrivals.clear()
    cpu, switches = h.cpu_seconds(worker)["worker"], h.context_switches(worker)
    t0 = time.time()
    result = chord(post.s(url, i) for i in range(WIDTH))(join.s())
    makespan = float(result.get(timeout=120)) - t0
    h.settle()
    return Run(makespan, max(arrivals) - t0, h.cpu_seconds(worker)["worker"] - cpu,
               h.context_switches(worker) - switches)


def run(h: Harness) -> list[Result]:
    from django.conf import settings

    from bench.tasks import use_result_backend

    use_result_backend()  # the raw chord needs one (the project has none)
    arrivals: list[float] = []
    with slow_endpoint(LATENCY, arrivals) as url:
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
            once(h, worker, arrivals), raw_once(h, worker, url, arrivals)  # warm-up
            runs, raws = [], []
            for _ in range(REPEATS):
                runs.append(once(h, worker, arrivals))
                raws.append(raw_once(h, worker, url, arrivals))
    median, raw_median = _median(runs, "makespan"), _median(raws, "makespan")
    return [
        Result.at_most("I/O-bound: 200 x 1 s HTTP calls, makespan", median, "s", 1.4,
                       f"one worker -P threads -c {CONCURRENCY}, DB pool {DB_POOL}; runs "
                       + ", ".join(f"{run.makespan:.2f}" for run in runs) + " s"),
        Result.info("I/O-bound: raw Celery chord, makespan", raw_median, "s",
                    "runs " + ", ".join(f"{raw.makespan:.2f}" for raw in raws) + " s"),
        Result.at_most("I/O-bound: ours / raw chord", median / raw_median, "x", RATIO_TARGET,
                       "medians, interleaved runs; the 1.4 s line against the issue's raw chord of 1.3 s"),
        Result.info("I/O-bound: the 200th call reached the endpoint after", _median(runs, "last_call"), "s",
                    f"from plan.started_at; raw chord {_median(raws, 'last_call'):.2f} s from its submission"),
        Result.info("I/O-bound: worker CPU per step", _median(runs, "worker_cpu") / WIDTH * 1000, "ms",
                    "one process: its threads share one GIL"),
        Result.info("I/O-bound: raw chord, worker CPU per task", _median(raws, "worker_cpu") / WIDTH * 1000, "ms",
                    "the same worker: the chord's tasks, its join and their results"),
        Result.info("I/O-bound: worker context switches per step", _median(runs, "switches") / WIDTH, "",
                    f"all its threads; raw chord {_median(raws, 'switches') / WIDTH:.0f} per task"),
    ]


def _median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)
