"""Health endpoints, cheap and safe under a flood of anonymous probes.

* ``GET /health/live``: the process answers (no database, no Redis): for a liveness probe.
* ``GET /health/ready``: the database and Redis answer, each with a short timeout: for a readiness probe.
* ``GET /health``: the same, and at least one Celery worker answers a ping.

All three are async views: a check waits in a worker thread of its own, never in the one thread that runs
Django's sync views (the API), so probes cannot queue the API behind them. The database check borrows a
pooled connection only for its ``SELECT 1`` and gives it back at once; nothing holds one while waiting on
Redis or the broker. The worker ping (up to a second) is shared: one ping at a time per process, its answer
reused for WORKERS_TTL seconds, so forty probes cost one ping.
"""

from __future__ import annotations

import threading
import time

from asgiref.sync import sync_to_async
from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from redis import Redis
from redis.exceptions import RedisError

from agents.api import llm_choices

WORKERS_TTL = 2.0
_workers_lock = threading.Lock()
_workers_seen: dict[str, float] = {"at": 0.0, "count": 0.0}


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the reason is in the payload
        return False
    finally:
        connection.close()  # back to the pool before anything else waits


def _redis() -> bool:
    try:
        return bool(Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping())
    except RedisError:
        return False


def _workers() -> int:
    """Workers answering a ping, at most WORKERS_TTL seconds old; one ping at a time per process."""
    with _workers_lock:
        if time.monotonic() - _workers_seen["at"] < WORKERS_TTL:
            return int(_workers_seen["count"])
        try:
            count = len(current_app.control.ping(timeout=1.0) or [])
        except (RedisError, OSError):
            count = 0
        _workers_seen.update(at=time.monotonic(), count=float(count))
        return count


async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def ready(request: HttpRequest) -> JsonResponse:
    checks = {"database": await sync_to_async(_database, thread_sensitive=False)(),
              "redis": await sync_to_async(_redis, thread_sensitive=False)()}
    ok = all(checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


async def health(request: HttpRequest) -> JsonResponse:
    checks = {"database": await sync_to_async(_database, thread_sensitive=False)(),
              "redis": await sync_to_async(_redis, thread_sensitive=False)()}
    workers = await sync_to_async(_workers, thread_sensitive=False)() if checks["redis"] else 0
    checks["workers"] = workers > 0
    ok = all(checks.values())
    llm = {c.agent: {"provider": c.provider, "model": c.model} for c in llm_choices()}  # issue 15
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks, "workers": workers,
                         "llm": llm}, status=200 if ok else 503)
