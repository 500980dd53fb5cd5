"""Health probes: /health/live needs nothing, /health/ready the database and Redis, and a flood of probes
leaves the API's latency flat (probes wait in threads of their own and hold no pooled connection)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from orchestrator import services


@pytest.mark.django_db
def test_live_answers_without_the_database(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/health/live")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_ready_checks_the_database_and_redis(settings: Any) -> None:
    assert Client().get("/health/ready").json() == {"status": "ok", "checks": {"database": True, "redis": True}}

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": True, "redis": False}


def _latencies(url: str, headers: dict[str, str], seconds: float) -> list[float]:
    """Latencies of one client's requests for ``seconds``, paced at ~100 a second at most: the test's 5 s stay
    well under the user's throttle (1,200 a minute), which a fast machine's back-to-back requests crossed."""
    found = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert client.get(url, headers=headers).status_code == 200
            found.append(time.monotonic() - started)
            time.sleep(max(0.0, 0.01 - found[-1]))
    return found


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("idle_worker")
def test_a_flood_of_health_probes_leaves_api_latency_flat(asgi_server: str, user: Any) -> None:
    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    url = f"{asgi_server}/api/plans/{plan.id}/"
    quiet = _latencies(url, headers, 2)
    stop = threading.Event()

    def probe(path: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                client.get(f"{asgi_server}{path}")

    flood = [threading.Thread(target=probe, args=(p,)) for p in ["/health", "/health/ready"] * 20]
    for thread in flood:
        thread.start()
    try:
        time.sleep(0.5)
        flooded = _latencies(url, headers, 3)
    finally:
        stop.set()
        for thread in flood:
            thread.join(timeout=30)

    # Before: every probe held the one sync thread (and a pooled connection) for a 1 s worker ping, and the
    # API's p50 went from ~13 ms to 5 s. A generous bound that a queue of probes could never meet:
    print(f"api p50 quiet {statistics.median(quiet) * 1000:.1f} ms, "
          f"flooded {statistics.median(flooded) * 1000:.1f} ms (max {max(flooded) * 1000:.0f} ms)")
    assert statistics.median(flooded) < max(0.25, 10 * statistics.median(quiet))
    assert max(flooded) < 2.0
