"""SSE fan-out: many watchers of one plan's live stream, spread over two uvicorn processes (2 cores), each
process with one Redis subscription fanned out in process (streams/hub.py).

The watchers are ``bench.sse_client`` processes (two, bare asyncio protocols), connected before the first event
with the plan's newest id as Last-Event-ID. This process then writes EVENTS ``step.progress`` events to the plan
at RATE per second, each in its own transaction through the real publisher (``PlanEvent`` insert, commit,
``orchestrator.events.publish_on_commit``: one Redis PUBLISH), stamping ``published_at`` (wall clock) into the
event's data just before the insert. Latency = the arrival of the chunk that carried the event at the watcher
(same machine clock) - ``published_at``: insert, commit, publish, pub/sub, the web process, the socket and the
watcher's own scheduling. Every watcher must receive every event (0 missing). Targets: with 2,000 watchers p99
<= 100 ms; with 500 watchers p50 <= 20 ms. Load generator, web processes, Postgres and Redis share the 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.harness import ROOT, Harness, Result
from bench.web import Web, cpu_seconds, web_servers

WEB_PROCESSES = 2
CLIENT_PROCESSES = 2
EVENTS = int(os.environ.get("BENCH_SSE_EVENTS", 100))
RATE = 20.0  # events per second
SCENARIOS = tuple(int(n) for n in os.environ.get("BENCH_SSE_WATCHERS", "500,2000").split(","))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _publish(plan_id: uuid.UUID, seq: int, final: bool) -> int:
    from django.db import transaction

    from orchestrator import events
    from orchestrator.models import PlanEvent

    with transaction.atomic():
        data: dict[str, Any] = {"seq": seq, "published_at": time.time()}
        if final:
            data["final"] = True
        event = PlanEvent.objects.create(plan_id=plan_id, type="step.progress", step_key="bench", data=data)
        events.publish_on_commit([event])
    return int(event.id)


def _watch(webs: list[Web], plan_id: uuid.UUID, token: str, watchers: int) -> dict[str, Any]:
    """Connect ``watchers`` streams, publish, and gather what each received."""
    from orchestrator.events import last_event_id
    from orchestrator.models import PlanEvent

    path = f"/api/plans/{plan_id}/events/?lastEventId={last_event_id(plan_id=plan_id)}"
    share = [watchers // CLIENT_PROCESSES + (1 if i < watchers % CLIENT_PROCESSES else 0)
             for i in range(CLIENT_PROCESSES)]
    urls = ",".join(w.url for w in webs)
    clients = [subprocess.Popen([sys.executable, "-m", "bench.sse_client", urls, path, token, str(n)],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True) for n in share]
    try:
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a watcher process did not connect: {line[:200]!r}")
        time.sleep(0.5)  # let the opening reads settle
        published = []
        spread: list[Any] = []
        pids = {"web": [w.pid for w in webs], "watchers": [c.pid for c in clients], "publisher": [os.getpid()]}
        cpu_before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        heard: dict[int, float] = {}
        if os.environ.get("BENCH_SSE_SPREAD"):
            import threading

            import redis
            from django.conf import settings

            from orchestrator.events import PUBSUB_CHANNEL, decode
            sub = redis.Redis.from_url(settings.REDIS_URL).pubsub()
            sub.subscribe(PUBSUB_CHANNEL)

            def listen() -> None:
                for m in sub.listen():
                    if m["type"] == "message":
                        for _, i, _, _ in decode(m["data"]):
                            heard[i] = time.time()
            threading.Thread(target=listen, daemon=True).start()
        started = time.monotonic()
        if os.environ.get("BENCH_SSE_SPREAD"):
            print("publishing", flush=True)
        for seq in range(EVENTS):
            time.sleep(max(0.0, started + seq / RATE - time.monotonic()))
            published.append(_publish(plan_id, seq, seq == EVENTS - 1))
        time.sleep(1.0)  # the last event's delivery
        cpu = {k: sum(cpu_seconds(p) for p in v) - cpu_before[k] for k, v in pids.items()}
        wall = time.monotonic() - started
        found: dict[str, Any] = {"ids": [], "latencies": [], "failed": 0, "errors": []}
        for client in clients:
            out, _ = client.communicate(timeout=120)
            part = json.loads(out.strip().splitlines()[-1])
            for key in found:
                found[key] += part[key]
            spread.append((part["first"], part["last"]))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    if os.environ.get("BENCH_SSE_SPREAD"):
        stamps = {e.id: e.data["published_at"] for e in PlanEvent.objects.filter(id__in=published)}
        for event_id in published[::10]:
            firsts = [f[str(event_id)] for f, _ in spread]
            lasts = [la[str(event_id)] for _, la in spread]
            print(f"{event_id}: redis {(heard.get(event_id, 0) - stamps[event_id]) * 1000:.1f} ms, "
                  f"first {(min(firsts) - stamps[event_id]) * 1000:.1f} ms, last "
                  f"{(max(lasts) - stamps[event_id]) * 1000:.1f} ms", flush=True)
    found["cpu"] = {k: v / wall for k, v in cpu.items()}  # cores busy while publishing
    wanted = set(published)
    found["missing"] = sum(1 for got in found["ids"] if not wanted <= set(got)) + found["failed"]
    return found


def run(h: Harness) -> list[Result]:
    from rest_framework.authtoken.models import Token

    from orchestrator.services import plan_create

    h.use_agents("sse", "agents:\n  held_bench:\n    kind: python\n    callable: agents.builtin.noop\n"
                        "    queue: held\n")
    token = Token.objects.get_or_create(user=h.user)[0].key
    plan_id = plan_create(owner=h.user, request="bench sse", steps=[{"key": "gate", "agent": "held_bench"}]).id
    results: list[Result] = []
    with web_servers("sse", WEB_PROCESSES, env={"STREAMS_PER_USER": "100000"}) as webs:
        for watchers in SCENARIOS:
            found = _watch(webs, plan_id, token, watchers)
            print(f"  cores busy while publishing: {found['cpu']}", flush=True)
            latencies = found["latencies"]
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
            setting = (f"{watchers} watchers over {WEB_PROCESSES} uvicorn processes, {EVENTS} events at "
                       f"{RATE:.0f}/s")
            results.append(Result.at_most(f"sse: {watchers} watchers, missing an event", found["missing"],
                                          "watchers", 0, f"{setting}; {found['failed']} failed to connect "
                                          f"{found['errors'][:1]}".rstrip("[] ")))
            if watchers == 2000:
                results.append(Result.at_most(f"sse: {watchers} watchers, latency p99", p99, "ms", 100,
                                              f"p50 {p50:.1f} ms, max {max(latencies):.1f} ms"))
            else:
                results.append(Result.at_most(f"sse: {watchers} watchers, latency p50", p50, "ms", 20,
                                              f"p99 {p99:.1f} ms, max {max(latencies):.1f} ms"))
    return results
