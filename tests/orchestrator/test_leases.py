"""Leases against real workers: a run that takes longer than its old fixed lease keeps its lease (the
heartbeat) and is never started twice; a slow planner is claimed like a step and its tokens count."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from agents import limits, registry
from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.states import PLAN_TERMINAL, PlanStatus, StepStatus
from tests.conftest import start_worker, stop_worker, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

# A short lease renewed every second: the old fixed lease (timeout + grace = 3 s) is shorter than the run.
LEASES = {"ORCH_LEASE_TTL": "2", "ORCH_HEARTBEAT_EVERY": "1", "ORCH_LEASE_GRACE": "1"}


@pytest.fixture
def slow_agent(fake_server: FakeServer, test_agents: str, tmp_path: Any) -> Iterator[str]:
    """An http agent on its own queue, behind a rate limit of one request every 3 s."""
    path = tmp_path / "slow.yaml"
    path.write_text(f"""
rate_limits:
  slow_rl: {{requests_per_minute: 20, burst: 1}}
agents:
  slow_remote:
    kind: http
    url: {fake_server.url}/agent
    timeout: 2
    retries: 2
    allow_private: true
    rate_limit: slow_rl
    queue: slow
""")
    files = os.pathsep.join([test_agents, str(path)])
    settings.AGENTS_FILE = files
    registry.reload()
    yield files
    settings.AGENTS_FILE = test_agents
    registry.reload()


def reconcile_until_ended(plan_id: uuid.UUID, timeout: float = 60) -> dict[str, int]:
    """Run the reconciler (as beat would, but often) until the plan ends; add up its repairs."""
    totals: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while Plan.objects.get(id=plan_id).status not in PLAN_TERMINAL:
        assert time.monotonic() < deadline, "the plan did not end"
        for name, count in services.reconcile().items():
            totals[name] = totals.get(name, 0) + count
        time.sleep(0.25)
    return totals


def test_a_run_longer_than_its_old_lease_keeps_its_lease_and_is_called_once(
        user: Any, fake_server: FakeServer, slow_agent: str) -> None:
    worker, _ = start_worker("slow", slow_agent, env=LEASES)
    try:
        limits.rate_try("slow_rl:requests", per_minute=20, burst=1)  # the next request waits about 3 s
        plan = services.plan_create(owner=user, request="slow", steps=[
            {"key": "slow", "agent": "slow_remote", "input": {"sleep": 1.5}}])
        repairs = reconcile_until_ended(plan.id)
    finally:
        stop_worker(worker)

    step = Step.objects.get(plan=plan, key="slow")
    assert (step.status, step.attempt) == (StepStatus.SUCCEEDED, 1)
    assert step.finished_at is not None and step.started_at is not None
    assert (step.finished_at - step.started_at).total_seconds() > 3  # longer than the old lease
    assert repairs.get("lease_expired", 0) == 0
    assert fake_server.call_count(str(step.id)) == 1


def test_a_slow_planner_is_called_once_across_reconciles_and_its_tokens_count(
        user: Any, fake_server: FakeServer, celery_worker: str, settings: Any) -> None:
    settings.ORCH_REQUEUE_AFTER = 0  # to the reconciler, every message in flight looks lost at once
    tag = uuid.uuid4().hex[:8]
    plan = services.plan_create(owner=user, request=f"scenario:good sleep:2 tag:{tag}")

    reconcile_until_ended(plan.id)

    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED
    assert fake_server.call_count(f"chat:{tag}") == 1
    usage = PlanEvent.objects.get(plan=plan, type="plan.planner_usage").data
    assert usage["completion_tokens"] == 7 and usage["prompt_tokens"] > 0
    assert plan.tokens_used == usage["prompt_tokens"] + usage["completion_tokens"]
