"""Plans run end to end through a real Celery worker process, real Postgres and real Redis."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from config.celery import app
from orchestrator import services
from orchestrator.models import PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def test_the_research_template_runs_to_completion(user: Any) -> None:
    plan = services.plan_create(owner=user, request="Why is the sky blue?", template="research")

    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED
    assert "[offline" in plan.result["text"]
    steps = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert {s.status for s in steps.values()} == {StepStatus.SUCCEEDED}
    assert steps["synthesis"].started_at >= max(steps["search"].finished_at, steps["reasoning"].finished_at)
    assert set(PlanEvent.objects.filter(plan=plan).values_list("type", flat=True)) >= {
        "plan.created", "plan.started", "step.queued", "step.started", "step.succeeded", "plan.completed"}


def test_independent_steps_really_overlap(user: Any) -> None:
    steps = [{"key": f"slow{i}", "agent": "remote", "input": {"sleep": 0.8}} for i in range(4)]

    plan = wait_for_plan(services.plan_create(owner=user, request="parallel", steps=steps).id)

    assert plan.status == PlanStatus.SUCCEEDED
    spans = list(Step.objects.filter(plan=plan).values_list("started_at", "finished_at"))
    latest_start = max(start for start, _ in spans)
    earliest_end = min(end for _, end in spans)
    assert latest_start < earliest_end, "all four steps should have been running at one moment"
    assert (plan.finished_at - plan.started_at) < timedelta(seconds=4 * 0.8)


def test_each_step_starts_when_its_own_dependencies_are_done(user: Any) -> None:
    steps = [
        {"key": "fast", "agent": "remote", "input": {"sleep": 0}},
        {"key": "slow", "agent": "remote", "input": {"sleep": 1.5}},
        {"key": "after_fast", "agent": "remote", "depends_on": ["fast"]},
    ]

    plan = wait_for_plan(services.plan_create(owner=user, request="branches", steps=steps).id)

    by_key = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert by_key["after_fast"].finished_at < by_key["slow"].finished_at


def test_a_duplicated_delivery_calls_the_agent_once(user: Any, fake_server: FakeServer) -> None:
    plan = services.plan_create(owner=user, request="dup", steps=[
        {"key": "once", "agent": "remote", "input": {"sleep": 0.3}}])
    step = Step.objects.get(plan=plan)

    for _ in range(3):  # the broker hands the same message out again
        app.send_task("orchestrator.run_step", args=(str(step.id), 1), queue="agents")
    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED
    assert fake_server.call_count(str(step.id)) == 1
    assert PlanEvent.objects.filter(plan=plan, type="step.started").count() == 1


def test_a_lost_dispatch_is_sent_again_by_the_reconciler(user: Any, celery_worker: str) -> None:
    app.control.cancel_consumer("agents", destination=[celery_worker], reply=True)
    try:
        plan = services.plan_create(owner=user, request="lost", steps=[
            {"key": "a", "agent": "echo"}, {"key": "b", "agent": "echo", "depends_on": ["a"]}])
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("agents")  # the message is lost
    finally:
        app.control.add_consumer("agents", destination=[celery_worker], reply=True)
    assert Step.objects.get(plan=plan, key="a").status == StepStatus.QUEUED

    counts = services.reconcile(now=timezone.now() + timedelta(minutes=5))

    assert counts["requeued"] == 1
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED
    assert PlanEvent.objects.filter(plan=plan, type="step.requeued", step_key="a").count() == 1


def test_a_failing_step_fails_the_plan_with_its_code(user: Any) -> None:
    plan = services.plan_create(owner=user, request="fail", steps=[
        {"key": "refused", "agent": "remote", "input": {"status": 400}},
        {"key": "after", "agent": "echo", "depends_on": ["refused"]}])

    plan = wait_for_plan(plan.id)

    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "agent.rejected")
    assert Step.objects.get(plan=plan, key="after").status == StepStatus.CANCELLED


def test_a_python_agent_error_fails_its_step_with_a_code(user: Any) -> None:
    plan = services.plan_create(owner=user, request="fail", steps=[
        {"key": "boom", "agent": "fail", "input": {"message": "nope"}}])

    plan = wait_for_plan(plan.id)

    step = Step.objects.get(plan=plan)
    assert (step.status, step.error_code) == (StepStatus.FAILED, "agent.python_error")
    assert "nope" in step.error_message
    assert plan.error_code == "agent.python_error"


def test_transient_errors_are_retried_then_fail_with_their_code(user: Any) -> None:
    plan = services.plan_create(owner=user, request="503", steps=[
        {"key": "down", "agent": "remote", "input": {"status": 503}}])

    plan = wait_for_plan(plan.id, timeout=60)

    assert plan.error_code == "agent.server_error"
    assert PlanEvent.objects.filter(plan=plan, type="step.retrying").count() == 2


def test_cancel_stops_a_running_plan(user: Any, fake_server: FakeServer) -> None:
    plan = services.plan_create(owner=user, request="cancel me", steps=[
        {"key": "slow", "agent": "remote", "input": {"sleep": 1.0}},
        {"key": "never", "agent": "remote", "depends_on": ["slow"]}])
    slow = Step.objects.get(plan=plan, key="slow")
    deadline = time.monotonic() + 30
    while Step.objects.get(id=slow.id).status != StepStatus.RUNNING:
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.02)

    services.plan_cancel(plan_id=plan.id, actor=user)

    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.CANCELLED
    never = Step.objects.get(plan=plan, key="never")
    assert never.status == StepStatus.CANCELLED
    assert httpx.get(f"{fake_server.url}/calls/{never.id}").json() == {"calls": 0}  # never called


def test_an_llm_plan_is_planned_and_run_by_the_worker(user: Any) -> None:
    plan = services.plan_create(owner=user, request="please scenario:good")

    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED
    assert plan.result == {"input": {}, "from": ["a"]}
