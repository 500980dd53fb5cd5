"""API throughput: requests per second of ``GET /api/plans/{id}/`` (a plan of 5 steps) and ``POST /api/plans/``
(a plan of one step, dispatched to Redis: the send path of services/dispatch.py) on 2 uvicorn processes, as the
deployment runs them (one process per container or pod, behind a load balancer: deploy/, Dockerfile), in
deployment settings (a DATABASE_URL given, DEBUG off, a real secret key and allowed hosts, the
whole middleware stack: throttling counted in Redis, the audit trail, Idempotency-Key support), side by side with
a trivial DRF endpoint in the same processes (``/api/_bench/ping/``: the same authentication, permission,
throttle and middleware, no work), so the ratio says what the plan endpoints themselves cost. The load
generator (``bench.http_load``: raw asyncio, keep-alive, CONNECTIONS at once, spread evenly over the processes as
a balancer spreads its connections) runs on the same 2 cores. (Not ``uvicorn --workers 2`` on one socket: there
the process that wakes first accepts every connection waiting, and 16 connections opened at once split 15 / 1,
one process at 100 % of a core while the other idled, for the whole round.) The
endpoints are measured in ROUNDS interleaved rounds (ping, GET, POST; SECONDS each), and each figure is the
median of its rounds: a shared machine's slow minutes (the trivial endpoint has moved by half within one run)
then weigh on every endpoint alike instead of on whichever ran in them. Targets: GET >= 500 rps,
POST >= 150 rps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.harness import ROOT, Harness, Result
from bench.web import cpu_seconds, web_servers

SECONDS = 5.0
ROUNDS = 3
CONNECTIONS = 16
PROCESSES = 2


def _deployment_env() -> dict[str, str]:
    from cryptography.fernet import Fernet
    from django.conf import settings

    return {"DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL, "ORCH_EMBEDDED": "",
            "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
            "MEMORY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "MEMORY_BLIND_INDEX_KEY": "a-long-random-blind-index-key-for-the-bench",
            "BENCH_ENDPOINTS": "1", "API_THROTTLE_USER": "100000000/min"}  # the throttle still counts


def _load(urls: str, method: str, path: str, token: str, expected: int, body: str = "", *,
          pids: tuple[int, ...] = (), database: Callable[[], float] | None = None) -> dict[str, Any]:
    def web_cpu() -> float:  # CPU seconds of the web processes so far
        return sum(cpu_seconds(pid) for pid in pids)

    before = web_cpu()
    db_before = database() if database else 0.0
    out = subprocess.run([sys.executable, "-m", "bench.http_load", urls, method, path, token, str(CONNECTIONS),
                          str(SECONDS), str(expected), body], cwd=ROOT, capture_output=True, text=True,
                         timeout=SECONDS + 120, check=True).stdout
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    found["rps"] = found["ok"] / found["seconds"]
    answered = found["ok"] + sum(found["other"].values())
    # the web processes' CPU per request: what a request costs, whatever else the shared machine is doing
    found["cpu_ms"] = (web_cpu() - before) * 1000 / answered if pids and answered else None
    # and Postgres's (its statements: parsing, planning, running them, the commits)
    found["db_ms"] = (database() - db_before) * 1000 / answered if database and answered else None
    return found


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate (its own CPU and latencies, so they belong together), with every
    round's rate, and every round's other answers and errors (none may hide in a round not chosen)."""
    middle = dict(sorted(runs, key=lambda found: found["rps"])[len(runs) // 2])
    middle["spread"] = " / ".join(f"{found['rps']:.0f}" for found in runs)
    middle["other"] = dict(sum((Counter(found["other"]) for found in runs), Counter()))
    middle["errors"] = [error for found in runs for error in found["errors"]]
    return middle


def run(h: Harness) -> list[Result]:
    from rest_framework.authtoken.models import Token

    from orchestrator.services import plan_create

    h.use_agents("api", "agents:\n  held_bench:\n    kind: python\n    callable: agents.builtin.noop\n"
                        "    queue: held\n")
    token = Token.objects.get_or_create(user=h.user)[0].key
    plan = plan_create(owner=h.user, request="bench api", steps=[
        {"key": f"s{i}", "agent": "held_bench"} for i in range(5)])
    body = json.dumps({"request": "bench api", "steps": [{"key": "a", "agent": "held_bench"}]})
    with web_servers("api", PROCESSES, env=_deployment_env()) as webs:
        urls = ",".join(web.url for web in webs)
        _load(urls, "GET", "/api/_bench/ping/", token, 200)  # warm up both processes
        cpu = {"pids": tuple(web.pid for web in webs), "database": lambda: h.cpu_seconds()["postgres"]}
        rounds = [(_load(urls, "GET", "/api/_bench/ping/", token, 200, **cpu),
                   _load(urls, "GET", f"/api/plans/{plan.id}/", token, 200, **cpu),
                   _load(urls, "POST", "/api/plans/", token, 201, body, **cpu))
                  for _ in range(ROUNDS)]
    ping, detail, create = (_median([r[i] for r in rounds]) for i in range(3))
    baseline = ping["rps"]

    def note(found: dict[str, Any]) -> str:
        other = f", other answers {found['other']}" if found["other"] else ""
        errors = f", errors {found['errors']}" if found["errors"] else ""
        return (f"{found['rps'] / baseline:.2f}x the trivial endpoint; rounds {found['spread']}; web CPU per "
                f"request {found['cpu_ms']:.2f} ms, Postgres {found['db_ms']:.2f} ms; latency p50 "
                f"{found['p50']:.1f} ms, p99 {found['p99']:.1f} ms{other}{errors}")

    setting = (f"{PROCESSES} uvicorn processes, {CONNECTIONS} keep-alive connections spread over them, medians of "
               f"{ROUNDS} interleaved rounds of {SECONDS:.0f} s")
    return [
        Result.info("api: trivial DRF endpoint (baseline)", baseline, "rps",
                    f"{setting}; rounds {ping['spread']}; web CPU per request {ping['cpu_ms']:.2f} ms, Postgres "
                    f"{ping['db_ms']:.2f} ms; latency p50 {ping['p50']:.1f} ms"),
        Result.at_least("api: GET /api/plans/{id}/ (5 steps)", detail["rps"], "rps", 500, note(detail)),
        Result.at_least("api: POST /api/plans/ (1 step)", create["rps"], "rps", 150, note(create)),
    ]
