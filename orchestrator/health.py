"""GET /health: 200 when the database, Redis and at least one worker answer; 503 otherwise."""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from redis import Redis
from redis.exceptions import RedisError


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy"; the reason is in the payload
        return False


def _redis() -> bool:
    try:
        return bool(Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping())
    except RedisError:
        return False


def _workers() -> int:
    try:
        return len(current_app.control.ping(timeout=1.0) or [])
    except (RedisError, OSError):
        return 0


def health(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "redis": _redis()}
    workers = _workers() if checks["redis"] else 0
    checks["workers"] = workers > 0
    ok = all(checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks, "workers": workers},
                        status=200 if ok else 503)
