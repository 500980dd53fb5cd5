"""Fairness between owners, through a real worker: one owner's plan of 200 one-second steps cannot make
another owner's one-step plan wait behind all of it (services/fairness.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from agents import registry
from orchestrator import services
from orchestrator.models import Step
from orchestrator.states import PlanStatus
from tests.conftest import start_worker, stop_worker, wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CAP = 8


@pytest.fixture
def fair_agents(test_agents: str, tmp_path: Any) -> Iterator[str]:
    """A sleeping agent on its own queue, so that only this test's worker (with the cap) runs it."""
    path = tmp_path / "fair.yaml"
    path.write_text("""
agents:
  fair_sleep:
    kind: python
    callable: agents.builtin.sleep
    queue: fair
""")
    files = os.pathsep.join([test_agents, str(path)])
    settings.AGENTS_FILE = files
    registry.reload()
    yield files
    settings.AGENTS_FILE = test_agents
    registry.reload()


def test_a_small_plan_is_not_starved_by_another_owners_big_plan(user: Any, django_user_model: Any,
                                                                fair_agents: str) -> None:
    settings.ORCH_OWNER_MAX_IN_FLIGHT = CAP  # this process gates the plans' first steps; the worker the rest
    other = django_user_model.objects.create_user(username="small-plan-owner", password="pw-for-tests")
    worker, _ = start_worker("fair", fair_agents, concurrency=16, env={"ORCH_OWNER_MAX_IN_FLIGHT": str(CAP),
                                                                        "ORCH_MAX_STEPS": "300"})
    try:
        settings.ORCH_MAX_STEPS = 300
        big = services.plan_create(owner=user, request="big", steps=[
            {"key": f"s{i}", "agent": "fair_sleep", "input": {"seconds": 1}} for i in range(200)])
        # the rest wait, ready (the worker may already have claimed some of the first CAP)
        assert Step.objects.filter(plan=big, status__in=["queued", "running"]).count() == CAP
        time.sleep(1.5)  # the big plan is well under way: its first steps ended and released the next
        started = time.monotonic()
        small = services.plan_create(owner=other, request="small", steps=[
            {"key": "only", "agent": "fair_sleep", "input": {"seconds": 1}}])
        small = wait_for_plan(small.id, timeout=30)
        took = time.monotonic() - started
        big.refresh_from_db()
        in_flight = Step.objects.filter(plan=big, status__in=["queued", "running"]).count()
    finally:
        stop_worker(worker)
        settings.ORCH_OWNER_MAX_IN_FLIGHT = 0
        settings.ORCH_MAX_STEPS = 500

    assert small.status == PlanStatus.SUCCEEDED
    # Behind at most CAP one-second steps on 16 threads, not behind ~180 of them (about 12 s).
    assert took < 5, took
    assert big.status == PlanStatus.RUNNING and 0 < in_flight <= CAP
    services.plan_cancel(plan_id=big.id)  # the rest need not run
