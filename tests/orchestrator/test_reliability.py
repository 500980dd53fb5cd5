"""Failures of real processes: a worker killed in the middle of a step."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from orchestrator import services
from orchestrator.models import PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import start_worker, stop_worker, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def wait_for_status(step: Step, status: str, timeout: float = 30) -> Step:
    deadline = time.monotonic() + timeout
    while (current := Step.objects.get(id=step.id)).status != status:
        assert time.monotonic() < deadline, f"{step.key} still {current.status}"
        time.sleep(0.05)
    return current


def test_a_worker_killed_mid_step_loses_nothing_and_reruns_nothing_finished(
        user: Any, fake_server: FakeServer, test_agents: str) -> None:
    doomed, _ = start_worker("fragile", test_agents)
    plan = services.plan_create(owner=user, request="survive a crash", steps=[
        {"key": "before", "agent": "remote_fragile"},
        {"key": "slow", "agent": "remote_fragile", "input": {"sleep": 2}, "depends_on": ["before"]},
        {"key": "after", "agent": "remote_fragile", "depends_on": ["slow"]}])
    before, slow = (Step.objects.get(plan=plan, key=key) for key in ("before", "slow"))
    slow = wait_for_status(slow, StepStatus.RUNNING)
    deadline = time.monotonic() + 30
    while fake_server.call_count(str(slow.id)) == 0:  # the agent service is now handling the call
        assert time.monotonic() < deadline, "the slow step's call never reached the agent service"
        time.sleep(0.02)

    os.kill(doomed.pid, signal.SIGKILL)  # no shutdown, no ack, no result: the step is left "running"
    doomed.wait()
    # No heartbeat renews its lease any more: once the lease's time has passed, the worker counts as lost.
    later = timezone.now() + timedelta(seconds=settings.ORCH_LEASE_TTL + 1)
    assert services.reconcile(now=later)["lease_expired"] == 1
    survivor, _ = start_worker("fragile", test_agents)
    try:
        plan = wait_for_plan(plan.id)
    finally:
        stop_worker(survivor)

    assert plan.status == PlanStatus.SUCCEEDED
    slow.refresh_from_db()
    assert (slow.status, slow.attempt) == (StepStatus.SUCCEEDED, 2)
    assert fake_server.call_count(str(before.id)) == 1  # the finished step did not run again
    assert fake_server.call_count(str(slow.id)) == 2  # the killed call, and the new attempt
    retried = PlanEvent.objects.get(plan=plan, step_key="slow", type="step.retrying")
    assert retried.data["reason"] == "worker_lost"
