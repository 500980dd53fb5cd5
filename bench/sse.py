"""SSE: live progress from a Celery worker to SSE clients through one uvicorn process (django-eventstream,
Redis pub/sub, PlanEvent storage). Latency: a real worker runs 3 plans, each a chain of 30 ``noop`` steps
(about 90 events apiece, written in the worker's own transactions); one client per plan, connected before
the plan starts, notes when each event arrives. Latency = arrival (client's clock) - the event's ``time``
(set by the worker just before its insert and commit, same machine clock), so it covers insert, commit,
publish, pub/sub, the web process and the socket. Targets p50 <= 20 ms, p99 <= 100 ms. Fan-out: 500
clients on the one web process follow one plan (40 parallel ``noop`` steps + a join); every client must
receive every stored event of the plan (target: 0 clients missing any); the latency of that run is shown
for context.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from bench.harness import ROOT, WORK_DIR, Harness, Result

CHAIN = 30
LATENCY_PLANS = 3
FANOUT_CLIENTS = 500
FANOUT_WIDTH = 40


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def web_server() -> Iterator[str]:
    """One uvicorn process on the bench's database and Redis; yields its base URL."""
    port = _free_port()
    with open(WORK_DIR / "uvicorn-sse.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "config.asgi:application", "--host",
                                    "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                                    "--backlog", "4096"], cwd=ROOT, env=dict(os.environ), stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/accounts/login/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start; see {WORK_DIR / 'uvicorn-sse.log'}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def _follow(client: httpx.AsyncClient, url: str, token: str, connected: asyncio.Event | None,
                  arrivals: dict[int, float]) -> None:
    """Read one plan's stream until plan.completed, noting each event's id and arrival time."""
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    async with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: stream-open") and connected is not None:
                connected.set()
            elif line.startswith("data: {"):
                arrived = time.time()
                event = json.loads(line[6:])
                arrivals.setdefault(event["id"], arrived)
                if event["type"] == "plan.completed":
                    return


def _stored_times(plan_id: uuid.UUID) -> dict[int, float]:
    from orchestrator.models import PlanEvent

    return {i: t.timestamp() for i, t in PlanEvent.objects.filter(plan_id=plan_id).values_list("id", "created_at")}


def _create(h: Harness, steps: list[dict[str, Any]]) -> uuid.UUID:
    from orchestrator.services import plan_create

    return plan_create(owner=h.user, request="bench sse", steps=steps).id


async def _run_followed(h: Harness, url: str, token: str, steps: list[dict[str, Any]], clients: int,
                        timeout: float) -> tuple[uuid.UUID, list[dict[int, float]], float]:
    """Create the plan behind a "gate" step no worker takes, connect ``clients`` streams, then open the gate
    (claim and succeed it here, as a worker would). Returns the plan, each client's arrivals, the opening time."""
    from asgiref.sync import sync_to_async

    from orchestrator import services

    plan_id = await sync_to_async(_create)(h, [{"key": "gate", "agent": "held_bench"}] + [
        {**s, "depends_on": s.get("depends_on", []) + ["gate"]} for s in steps])
    arrivals: list[dict[int, float]] = [{} for _ in range(clients)]
    connected = [asyncio.Event() for _ in range(clients)]
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as client:
        tasks = [asyncio.create_task(_follow(client, f"{url}/api/plans/{plan_id}/events/?lastEventId=0", token,
                                             connected[i], arrivals[i])) for i in range(clients)]
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), timeout=120)
        opened = time.time()
        await sync_to_async(_open_gate)(services, plan_id)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=timeout)
    return plan_id, arrivals, opened


def _open_gate(services: Any, plan_id: uuid.UUID) -> None:
    from orchestrator.models import Step

    gate = Step.objects.get(plan_id=plan_id, key="gate")
    services.step_claim(step_id=gate.id, attempt=gate.attempt, worker="bench")
    services.step_succeed(step_id=gate.id, attempt=gate.attempt, output=None, usage=None)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(h: Harness) -> list[Result]:
    from rest_framework.authtoken.models import Token

    h.use_agents("sse", "agents:\n  held_bench:\n    kind: python\n    callable: agents.builtin.noop\n"
                        "    queue: held\n")
    token = Token.objects.get_or_create(user=h.user)[0].key
    chain: list[dict[str, Any]] = [{"key": f"c{i}", "agent": "noop", "depends_on": [f"c{i - 1}"] if i else []}
                                   for i in range(CHAIN)]
    fan: list[dict[str, Any]] = [{"key": f"p{i}", "agent": "noop"} for i in range(FANOUT_WIDTH)]
    fan.append({"key": "join", "agent": "noop", "depends_on": [f"p{i}" for i in range(FANOUT_WIDTH)]})
    latencies: list[float] = []
    with h.worker("sse", concurrency=8, env={"DB_POOL_MAX_SIZE": "8"}), web_server() as url:
        for _ in range(LATENCY_PLANS):
            plan_id, (arrivals,), opened = asyncio.run(_run_followed(h, url, token, chain, 1, timeout=120))
            created = _stored_times(plan_id)
            latencies += [(arrivals[i] - t) * 1000 for i, t in created.items() if t >= opened]
        started = time.monotonic()
        plan_id, per_client, opened = asyncio.run(_run_followed(h, url, token, fan, FANOUT_CLIENTS, timeout=300))
        fan_seconds = time.monotonic() - started
        stored = _stored_times(plan_id)
    missing = sum(1 for arrivals in per_client if not set(stored) <= set(arrivals))
    fan_latency = [(a[i] - t) * 1000 for a in per_client for i, t in stored.items() if t >= opened and i in a]
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return [
        Result.at_most("sse: event latency p50", p50, "ms", 20,
                       f"{len(latencies)} events of {LATENCY_PLANS} chains of {CHAIN} noop steps, 1 client each"),
        Result.at_most("sse: event latency p99", p99, "ms", 100, f"max {max(latencies):.1f} ms"),
        Result.at_most(f"sse: of {FANOUT_CLIENTS} clients, missing an event", missing, "clients", 0,
                       f"{len(stored)} events each, one uvicorn process; {fan_seconds:.1f} s from connect to last "
                       f"plan.completed"),
        Result.info(f"sse: latency p50 / p99 with {FANOUT_CLIENTS} clients",
                    _percentile(fan_latency, 0.5), "ms", f"p99 {_percentile(fan_latency, 0.99):.1f} ms"),
    ]
