"""Chaos: the database and the broker go away while steps are in their agent calls. Every plan still
finishes, no agent is called twice for a step it already answered, and the API keeps answering: a JSON 503
while the database is down, and at once (201) while the broker is down."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from django.db import OperationalError, connection
from rest_framework.authtoken.models import Token

from config import services as embedded
from orchestrator import services
from orchestrator.models import Plan, Step
from orchestrator.states import PLAN_TERMINAL, PlanStatus
from tests.conftest import start_worker, stop_worker
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PLANS = 8


def chaos_plans(user: Any, gate: str) -> list[Plan]:
    """Plans whose first step calls the agent service and is held there until the test opens ``gate``."""
    return [services.plan_create(owner=user, request=f"chaos {i}", steps=[
        {"key": "call", "agent": "remote", "input": {"gate": gate}},
        {"key": "after", "agent": "echo", "depends_on": ["call"]}]) for i in range(PLANS)]


def wait_until(condition: Any, what: str, timeout: float = 60, every: float = 0.2, also: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if also is not None:
            also()
        time.sleep(every)


def all_ended(plans: list[Plan]) -> bool:
    """Have the plans all ended? (False while this process's pool is still reconnecting after the outage.)"""
    try:
        return Plan.objects.filter(id__in=[p.id for p in plans]).exclude(status__in=PLAN_TERMINAL).count() == 0
    except OperationalError:
        connection.close()
        return False


def reconcile_quietly() -> None:
    """What beat does every few seconds (tolerating the outage's tail)."""
    try:
        services.reconcile()
    except Exception:  # noqa: BLE001 - a repair that meets the outage is simply tried again next time
        connection.close()


def test_postgres_stopped_while_agents_are_answering(user: Any, fake_server: FakeServer, celery_worker: str,
                                                      asgi_server: str) -> None:
    token = Token.objects.create(user=user).key
    gate = f"pg-{uuid.uuid4().hex[:6]}"
    plans = chaos_plans(user, gate)
    calls = [str(Step.objects.get(plan=plan, key="call").id) for plan in plans]
    wait_until(lambda: all(fake_server.call_count(c) == 1 for c in calls), "every call to reach the agent")
    connection.close()

    answers: list[tuple[int, str | None, str]] = []

    def ask() -> None:
        response = httpx.get(f"{asgi_server}/api/plans/", headers={"Authorization": f"Token {token}"}, timeout=30)
        answers.append((response.status_code, response.headers.get("Retry-After"),
                        response.json()["error"]["code"]))

    embedded.stop_postgres()
    try:
        fake_server.open_gate(gate)  # every agent answers while the database is down
        live = httpx.get(f"{asgi_server}/health/live", timeout=30)  # the process answers: no restart
        ready = httpx.get(f"{asgi_server}/health/ready", timeout=30)  # but it cannot serve: out of rotation
        askers = [threading.Thread(target=ask) for _ in range(3)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(timeout=60)
        time.sleep(2)
    finally:
        embedded.start_postgres()  # the same data

    wait_until(lambda: all_ended(plans), "every plan to end", also=reconcile_quietly, every=0.5)
    ended = list(Plan.objects.filter(id__in=[p.id for p in plans]).values_list("status", "error_code", "error_message"))
    assert {status for status, _, _ in ended} == {PlanStatus.SUCCEEDED}, ended
    assert answers == [(503, "5", "service.unavailable")] * 3
    assert live.status_code == 200
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    assert set(Plan.objects.filter(id__in=[p.id for p in plans]).values_list("status", flat=True)) == {
        PlanStatus.SUCCEEDED}
    assert [fake_server.call_count(c) for c in calls] == [1] * PLANS  # no finished call was made again
    assert set(Step.objects.filter(key="call").values_list("attempt", flat=True)) == {1}


def test_redis_killed_and_restarted_empty_while_workers_hold_tasks(user: Any, fake_server: FakeServer,
                                                                   test_agents: str, asgi_server: str) -> None:
    token = Token.objects.create(user=user).key
    gate = f"redis-{uuid.uuid4().hex[:6]}"
    workers = [start_worker("chaos", test_agents, concurrency=8)[0] for _ in range(2)]
    try:
        plans = [services.plan_create(owner=user, request=f"chaos {i}", steps=[
            {"key": "call", "agent": "remote_chaos", "input": {"gate": gate}},
            {"key": "after", "agent": "remote_chaos", "depends_on": ["call"]}]) for i in range(PLANS)]
        calls = [str(Step.objects.get(plan=plan, key="call").id) for plan in plans]
        wait_until(lambda: all(fake_server.call_count(c) == 1 for c in calls), "every call to reach the agent")
        port = embedded.redis_port()

        embedded.kill_redis()  # SIGKILL: no persistence, every queued message and unacked delivery is gone
        posted: list[tuple[int, float]] = []
        for i in range(3):
            started = time.monotonic()
            response = httpx.post(f"{asgi_server}/api/plans/", headers={"Authorization": f"Token {token}"},
                                  json={"request": f"during the outage {i}",
                                        "steps": [{"key": "only", "agent": "remote_chaos"}]}, timeout=30)
            posted.append((response.status_code, time.monotonic() - started))
            if response.status_code == 201:
                plans.append(Plan.objects.get(id=response.json()["id"]))
        time.sleep(2)
        embedded.start_redis(port)  # empty
        fake_server.open_gate(gate)

        wait_until(lambda: all_ended(plans), "every plan to end", timeout=90, also=reconcile_quietly, every=1)
        alive = [worker.poll() is None for worker in workers]
    finally:
        for worker in workers:
            stop_worker(worker)

    assert [status for status, _ in posted] == [201] * 3
    assert max(seconds for _, seconds in posted) < 1.0, posted
    assert alive == [True, True]
    assert set(Plan.objects.filter(id__in=[p.id for p in plans]).values_list("status", flat=True)) == {
        PlanStatus.SUCCEEDED}
    assert [fake_server.call_count(c) for c in calls] == [1] * PLANS
