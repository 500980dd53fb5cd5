"""Prometheus metrics, derived at scrape time from the shared state: correct across any number of web and
worker processes on any number of machines, with no multiprocess directory to share.

Why derived, not counted in each process: every figure the issue asks for is already recorded once, in one
place, by the code that owns it: steps and plans (status, timings, tokens, cost) in PostgreSQL, queues
and circuit breakers in Redis. A scrape reads them with a handful of aggregate queries (one pass over the
step table; a cost that grows with the table, fine at the retention this service keeps). The one figure
no table records, the reconciler's repairs, is counted in a Redis hash by the reconcile task
(:func:`record_repairs`). Counters derived from rows reset if plans are deleted; Prometheus treats a drop
as a counter reset, so ``rate()`` stays right.

``GET /metrics`` answers a request from loopback, or one with ``Authorization: Bearer $METRICS_TOKEN``
when that variable is set (Kubernetes: the scrape config sends it); anything else gets 403.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from functools import cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from agents.api import agent_list, agent_status
from approvals.metrics import pending_approvals

log = logging.getLogger("orchestrator")

REPAIRS_KEY = "orchestrator:metrics:repairs"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
BREAKER_STATES = ("closed", "half_open", "open", "unknown")


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def record_repairs(counts: dict[str, int]) -> None:
    """Add one reconciler run's repairs to the shared counters (a no-op for zeros; never raises for Redis)."""
    repaired = {kind: n for kind, n in counts.items() if n}
    if not repaired:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for kind, n in repaired.items():
            pipe.hincrby(REPAIRS_KEY, kind, n)
        pipe.execute()
    except RedisError as exc:
        log.warning("orchestrator.metrics.unrecorded", extra={"error": str(exc), **repaired})


def _rows(sql: str, params: list[float] | None = None) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


def _plans_and_steps() -> Iterator[Metric]:
    plans = GaugeMetricFamily("orch_plans", "Plans by status.", labels=["status"])
    for status, n in _rows("SELECT status, count(*) FROM orchestrator_plan GROUP BY status"):
        plans.add_metric([str(status)], float(n))  # type: ignore[arg-type]
    yield plans
    steps = GaugeMetricFamily("orch_steps", "Steps by status and agent.", labels=["status", "agent"])
    for status, agent, n in _rows("SELECT status, agent, count(*) FROM orchestrator_step GROUP BY 1, 2"):
        steps.add_metric([str(status), str(agent)], float(n))  # type: ignore[arg-type]
    yield steps


def _durations() -> Iterator[Metric]:
    seconds = "extract(epoch FROM finished_at - started_at)"
    buckets = ", ".join(f"count(*) FILTER (WHERE {seconds} <= %s)" for _ in DURATION_BUCKETS)
    family = HistogramMetricFamily("orch_step_duration_seconds",
                                   "Time from a step's claim to its end (succeeded or failed), by agent.",
                                   labels=["agent", "status"])
    for row in _rows(f"SELECT agent, status, count(*), coalesce(sum({seconds}), 0), {buckets} FROM orchestrator_step "
                     "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL GROUP BY 1, 2", list(DURATION_BUCKETS)):
        agent, status, total, total_seconds, *counts = row
        pairs = [(str(b), float(c)) for b, c in zip(DURATION_BUCKETS, counts, strict=True)]  # type: ignore[arg-type]
        family.add_metric([str(agent), str(status)], [*pairs, ("+Inf", float(total))],  # type: ignore[arg-type]
                          float(total_seconds))  # type: ignore[arg-type]
    yield family


def _usage() -> Iterator[Metric]:
    tokens = CounterMetricFamily("orch_tokens", "LLM tokens used, by agent, model and kind (prompt|completion).",
                                 labels=["agent", "model", "kind"])
    cost = CounterMetricFamily("orch_cost_usd", "Cost of agent calls in US dollars (agents.yaml prices).",
                               labels=["agent", "model"])
    # A fallback that answered is recorded in usage.agent: the cost is that agent's.
    for agent, model, prompt, completion, usd in _rows(
            "SELECT coalesce(usage->>'agent', agent), coalesce(usage->>'model', ''), sum(prompt_tokens), "
            "sum(completion_tokens), sum(cost) FROM orchestrator_step WHERE usage IS NOT NULL GROUP BY 1, 2"):
        tokens.add_metric([str(agent), str(model), "prompt"], float(prompt))  # type: ignore[arg-type]
        tokens.add_metric([str(agent), str(model), "completion"], float(completion))  # type: ignore[arg-type]
        cost.add_metric([str(agent), str(model)], float(usd))  # type: ignore[arg-type]
    yield tokens
    yield cost


def _approvals() -> Iterator[Metric]:
    pending = pending_approvals()
    yield GaugeMetricFamily("orch_approvals_pending", "Approvals waiting for a decision.", value=pending.count)
    yield GaugeMetricFamily("orch_approvals_oldest_pending_age_seconds",
                            "How long the oldest pending approval has waited (0: none).",
                            value=pending.oldest_age_seconds)


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def _redis_state() -> Iterator[Metric]:
    depth = GaugeMetricFamily("orch_queue_depth", "Messages waiting in a Celery queue (Redis list length).",
                              labels=["queue"])
    repairs = CounterMetricFamily("orch_reconciler_repairs", "Repairs made by the reconciler, by kind.",
                                  labels=["kind"])
    try:
        pipe = _redis().pipeline(transaction=False)
        names = queue_names()
        for name in names:
            pipe.llen(name)
        pipe.hgetall(REPAIRS_KEY)
        *lengths, repaired = pipe.execute()
    except RedisError as exc:
        log.warning("orchestrator.metrics.redis_unavailable", extra={"error": str(exc)})
        yield GaugeMetricFamily("orch_redis_up", "1 when Redis answered the scrape.", value=0)
        return
    for name, length in zip(names, lengths, strict=True):
        depth.add_metric([name], float(length))
    for kind in ("requeued", "lease_expired", "advanced", "replanned"):
        repairs.add_metric([kind], float(repaired.get(kind.encode(), 0)))
    yield GaugeMetricFamily("orch_redis_up", "1 when Redis answered the scrape.", value=1)
    yield depth
    yield repairs
    breakers = GaugeMetricFamily("orch_agent_breaker_state", "1 for each agent's current breaker state.",
                                 labels=["agent", "state"])
    for spec in agent_list():
        if spec.kind == "python" and not spec.breaker:
            continue  # in-process code has no breaker (agents.api._attempt)
        state = agent_status(spec.name).breaker.state
        for candidate in BREAKER_STATES:
            breakers.add_metric([spec.name, candidate], 1.0 if candidate == state else 0.0)
    yield breakers


class OrchestratorCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from _plans_and_steps()
        yield from _durations()
        yield from _usage()
        yield from _approvals()
        yield from _redis_state()


def _allowed(request: HttpRequest) -> bool:
    token = os.environ.get("METRICS_TOKEN", "")
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the Prometheus text format (see the module docstring for who may read it)."""
    if not _allowed(request):
        return JsonResponse({"error": {"code": "metrics.forbidden",
                                       "message": "/metrics answers loopback, or a Bearer METRICS_TOKEN"}},
                            status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OrchestratorCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
