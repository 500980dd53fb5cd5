"""Retrying a failed plan and resuming a cancelled one (issue 10, item 5), through a real worker: only the
steps that did not succeed run again (the fake agent service counts each step's calls)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import api_client, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def _calls(fake_server: FakeServer, plan: Plan) -> dict[str, int]:
    return {step.key: fake_server.call_count(str(step.id)) for step in Step.objects.filter(plan=plan)}


def test_retrying_a_failed_plan_runs_only_what_did_not_succeed(user: Any, fake_server: FakeServer) -> None:
    steps = [{"key": "first", "agent": "remote"},
             {"key": "flaky", "agent": "remote", "input": {"fail_first": 1}, "depends_on": ["first"]},
             {"key": "after", "agent": "remote", "depends_on": ["flaky"]},
             {"key": "aside", "agent": "remote"}]
    plan = wait_for_plan(services.plan_create(owner=user, request="retry", steps=steps).id)
    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "agent.rejected")
    assert Step.objects.get(plan=plan, key="after").status == StepStatus.CANCELLED

    response = api_client(user).post(f"/api/plans/{plan.id}/retry/")

    assert response.status_code == 200 and response.json()["status"] == "running"
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    assert (plan.error_code, plan.finished_at is not None) == ("", True)
    assert _calls(fake_server, plan) == {"first": 1, "flaky": 2, "after": 1, "aside": 1}
    flaky = Step.objects.get(plan=plan, key="flaky")
    assert (flaky.status, flaky.attempt, flaky.error_code) == (StepStatus.SUCCEEDED, 2, "")
    history = list(PlanEvent.objects.filter(plan=plan, step_key="flaky").values_list("type", "data__attempt"))
    assert ("step.failed", 1) in history and ("step.retried", 1) in history and ("step.succeeded", 2) in history


def test_a_cancelled_plan_resumes_where_it_stopped(user: Any, fake_server: FakeServer) -> None:
    gate = f"resume-{uuid.uuid4().hex[:6]}"
    steps = [{"key": "done", "agent": "remote"},
             {"key": "slow", "agent": "remote", "input": {"gate": gate}, "depends_on": ["done"]},
             {"key": "last", "agent": "remote", "depends_on": ["slow"]}]
    plan = services.plan_create(owner=user, request="resume", steps=steps)
    slow = Step.objects.get(plan=plan, key="slow")
    deadline = time.monotonic() + 30
    while fake_server.call_count(str(slow.id)) < 1:
        assert time.monotonic() < deadline, "the slow step never reached the agent"
        time.sleep(0.05)
    services.plan_cancel(plan_id=plan.id)
    fake_server.open_gate(gate)  # its answer is now stale: discarded

    services.plan_retry(plan_id=plan.id)

    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    assert _calls(fake_server, plan) == {"done": 1, "slow": 2, "last": 1}


def test_only_a_failed_or_cancelled_plan_can_be_retried(user: Any) -> None:
    plan = wait_for_plan(services.plan_create(owner=user, request="fine", steps=[{"key": "a", "agent": "echo"}]).id)
    assert plan.status == PlanStatus.SUCCEEDED

    response = api_client(user).post(f"/api/plans/{plan.id}/retry/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "plan.not_retryable"
    assert Plan.objects.get(id=plan.id).status == PlanStatus.SUCCEEDED
