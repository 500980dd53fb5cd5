"""The scheduler's services against the real database, without a worker: claims, stale results, races."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from common.errors import Conflict
from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.planning import PlanInvalid
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import wait_for_plan

pytestmark = pytest.mark.django_db(transaction=True)

JOIN = [{"key": "a", "agent": "held"}, {"key": "b", "agent": "held"},
        {"key": "join", "agent": "held", "depends_on": ["a", "b"]}]


def steps_of(plan: Plan) -> dict[str, Step]:
    return {step.key: step for step in Step.objects.filter(plan=plan)}


def test_a_template_plan_queues_only_its_root(user: Any) -> None:
    plan = services.plan_create(owner=user, request="Why is the sky blue?", template="research")

    steps = steps_of(plan)
    assert plan.status == PlanStatus.RUNNING
    assert steps["query_analysis"].status == StepStatus.QUEUED
    assert steps["query_analysis"].attempt == 1
    assert set(steps) == {"query_analysis"}  # the rest is spawned by its dynamic rules (test_dynamic.py)


def test_an_invalid_plan_stores_nothing(user: Any) -> None:
    with pytest.raises(PlanInvalid) as caught:
        services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held", "depends_on": ["a"]}])

    assert caught.value.code == "plan.cycle"
    assert not Plan.objects.exists()
    assert not Step.objects.exists()


def test_a_second_claim_of_the_same_attempt_is_a_no_op(user: Any) -> None:
    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    step = steps_of(plan)["a"]

    first = services.step_claim(step_id=step.id, attempt=1, worker="w1")
    second = services.step_claim(step_id=step.id, attempt=1, worker="w2")

    assert first is not None and second is None
    step.refresh_from_db()
    assert step.worker == "w1"
    assert PlanEvent.objects.filter(plan=plan, type="step.started").count() == 1


def test_a_stale_attempt_cannot_claim_or_record(user: Any) -> None:
    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    step = steps_of(plan)["a"]

    assert services.step_claim(step_id=step.id, attempt=0, worker="w") is None
    services.step_claim(step_id=step.id, attempt=1, worker="w")
    assert services.step_succeed(step_id=step.id, attempt=2, output="late", usage=None) is False
    step.refresh_from_db()
    assert step.status == StepStatus.RUNNING


def finish_together(plan: Plan, keys: tuple[str, ...]) -> None:
    """Claim the steps, then record their successes from as many threads released at the same moment."""
    steps = steps_of(plan)
    for key in keys:
        services.step_claim(step_id=steps[key].id, attempt=1, worker="w")
    barrier = threading.Barrier(len(keys))

    def finish(key: str) -> None:
        barrier.wait()
        services.step_succeed(step_id=steps[key].id, attempt=1, output=key, usage=None)
        connection.close()

    threads = [threading.Thread(target=finish, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_the_join_is_queued_once_when_its_dependencies_finish_together(user: Any) -> None:
    plan = services.plan_create(owner=user, request="race", steps=JOIN)
    finish_together(plan, ("a", "b"))

    join = Step.objects.get(plan=plan, key="join")
    assert join.status == StepStatus.QUEUED
    assert join.attempt == 1
    assert PlanEvent.objects.filter(plan=plan, step_key="join", type="step.queued").count() == 1


def test_the_last_two_steps_finishing_together_finish_the_plan(user: Any) -> None:
    plan = services.plan_create(owner=user, request="race", steps=JOIN[:2])
    finish_together(plan, ("a", "b"))

    plan.refresh_from_db()
    assert plan.status == PlanStatus.SUCCEEDED
    assert plan.result == {"a": "a", "b": "b"}


def test_a_failed_step_cancels_its_dependents_and_fails_the_plan(user: Any) -> None:
    plan = services.plan_create(owner=user, request="x", steps=JOIN)
    steps = steps_of(plan)
    services.step_claim(step_id=steps["a"].id, attempt=1, worker="w")
    services.step_claim(step_id=steps["b"].id, attempt=1, worker="w")

    services.step_fail(step_id=steps["a"].id, attempt=1, code="agent.rejected", message="no")
    plan.refresh_from_db()
    assert plan.status == PlanStatus.RUNNING  # b is still running
    services.step_succeed(step_id=steps["b"].id, attempt=1, output="b", usage=None)

    plan.refresh_from_db()
    steps = steps_of(plan)
    assert steps["join"].status == StepStatus.CANCELLED
    assert steps["join"].error_code == "step.upstream_failed"
    assert plan.status == PlanStatus.FAILED
    assert plan.error_code == "agent.rejected"


def test_cancel_ends_every_open_step_and_discards_late_results(user: Any) -> None:
    plan = services.plan_create(owner=user, request="x", steps=JOIN)
    steps = steps_of(plan)
    services.step_claim(step_id=steps["a"].id, attempt=1, worker="w")

    services.plan_cancel(plan_id=plan.id, actor=user)

    assert services.step_succeed(step_id=steps["a"].id, attempt=1, output="late", usage=None) is False
    plan.refresh_from_db()
    assert plan.status == PlanStatus.CANCELLED
    assert {s.status for s in steps_of(plan).values()} == {StepStatus.CANCELLED}
    with pytest.raises(Conflict):
        services.plan_cancel(plan_id=plan.id, actor=user)


def test_the_reconciler_retries_a_step_whose_worker_was_lost(user: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    step = steps_of(plan)["a"]
    services.step_claim(step_id=step.id, attempt=1, worker="w")

    counts = services.reconcile(now=timezone.now() + timedelta(hours=2))

    step.refresh_from_db()
    assert counts["lease_expired"] == 1
    assert (step.status, step.attempt) == (StepStatus.QUEUED, 2)
    assert services.step_succeed(step_id=step.id, attempt=1, output="from the lost worker", usage=None) is False


def test_a_step_lost_too_often_fails_the_plan(user: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    step = steps_of(plan)["a"]
    later = timezone.now()
    for attempt in range(1, step.max_attempts + 1):
        services.step_claim(step_id=step.id, attempt=attempt, worker="w")
        later += timedelta(hours=2)
        services.reconcile(now=later)

    plan.refresh_from_db()
    step.refresh_from_db()
    assert step.status == StepStatus.FAILED and step.error_code == "step.worker_lost"
    assert plan.status == PlanStatus.FAILED and plan.error_code == "step.worker_lost"


def test_planning_rejects_a_bad_llm_plan_with_its_code_and_no_steps(user: Any) -> None:
    plan = services.plan_create(owner=user, request="do it scenario:cycle")
    assert plan.status == PlanStatus.PLANNING

    services.plan_generate(plan_id=plan.id, attempt=1, worker="test")

    plan = wait_for_plan(plan.id, timeout=10)  # a test worker may have claimed the planning first
    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "plan.cycle")
    assert not Step.objects.filter(plan=plan).exists()


def test_planning_starts_a_good_llm_plan(user: Any) -> None:
    plan = services.plan_create(owner=user, request="do it scenario:good")

    services.plan_generate(plan_id=plan.id, attempt=1, worker="test")

    # A test worker may have claimed the planning first, and be running the plan.
    plan = wait_for_plan(plan.id, timeout=10, statuses=(PlanStatus.RUNNING, PlanStatus.SUCCEEDED))
    assert plan.status in (PlanStatus.RUNNING, PlanStatus.SUCCEEDED)
    steps = steps_of(plan)
    assert set(steps) == {"a", "b"} and steps["b"].depends_on == ["a"]
    assert steps["a"].attempt == 1
