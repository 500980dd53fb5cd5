"""A wide step (more than readiness.WIDE dependencies) counts its dependencies in slots (StepSlot): its many
dependencies' ends update SLOTS rows side by side instead of waiting one behind another on its row. The counts
stay true whatever the order of the ends, the step becomes ready exactly once, and a change of structure keeps
the slots true."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step, StepSlot
from orchestrator.services import readiness
from orchestrator.services.readiness import SLOTS, WIDE, slot_of

pytestmark = pytest.mark.django_db(transaction=True)

WIDTH = 3 * WIDE


def _fan_in(user: Any, width: int = WIDTH) -> Plan:
    return services.plan_create(owner=user, request="fan-in", steps=[
        *({"key": f"s{i}", "agent": "held"} for i in range(width)),
        {"key": "join", "agent": "held", "depends_on": [f"s{i}" for i in range(width)]}])


def _counts_are_true(plan: Plan) -> None:
    """The join's slots and count as its dependencies' statuses say."""
    status = dict(Step.objects.filter(plan=plan).values_list("key", "status"))
    deps = [key for key in status if key != "join"]
    expected = {slot_of(dep): 0 for dep in deps}  # a row for every slot a dependency counts in
    for dep in deps:
        expected[slot_of(dep)] += status[dep] != "succeeded"
    slots = dict(StepSlot.objects.filter(plan=plan, step_key="join").values_list("slot", "waiting"))
    assert slots == expected
    assert Step.objects.get(plan=plan, key="join").waiting_on == sum(1 for waiting in slots.values() if waiting)


def test_the_slots_are_written_with_the_plan_and_narrow_steps_have_none(user: Any) -> None:
    plan = _fan_in(user)

    join = Step.objects.get(plan=plan, key="join")
    slots = dict(StepSlot.objects.filter(plan=plan).values_list("slot", "waiting"))
    assert slots == dict(Counter(slot_of(f"s{i}") for i in range(WIDTH)))
    assert sum(slots.values()) == WIDTH and len(slots) <= SLOTS
    assert join.waiting_on == len(slots)  # the slots not at 0
    narrow = _fan_in(user, WIDE)  # exactly WIDE dependencies: counted on the step itself
    assert not StepSlot.objects.filter(plan=narrow).exists()
    assert Step.objects.get(plan=narrow, key="join").waiting_on == WIDE


def test_the_counts_stay_true_and_the_join_is_queued_once_whatever_the_order(user: Any) -> None:
    rng = random.Random(5)
    plan = _fan_in(user)
    queued = list(Step.objects.filter(plan=plan, status="queued").values_list("id", "key"))
    rng.shuffle(queued)
    for step_id, _ in queued:
        assert services.step_claim(step_id=step_id, attempt=1, worker="w") is not None
    for n, (step_id, _) in enumerate(queued, 1):
        assert Step.objects.get(plan=plan, key="join").status == "pending"
        assert services.step_succeed(step_id=step_id, attempt=1, output=n, usage=None)
        _counts_are_true(plan)

    join = Step.objects.get(plan=plan, key="join")
    assert join.status == "queued" and join.attempt == 1
    assert PlanEvent.objects.filter(plan=plan, step_key="join", type="step.queued").count() == 1


def test_dependencies_ending_side_by_side_free_the_join_exactly_once(user: Any) -> None:
    """Eight threads end the join's dependencies at once, each on its own connection (the shared path, in
    autocommit): the slot rows' locks decide which end empties a slot, and the step row's which end frees it."""
    for _ in range(3):
        plan = _fan_in(user)
        queued = list(Step.objects.filter(plan=plan, status="queued").values_list("id", flat=True))
        for step_id in queued:
            services.step_claim(step_id=step_id, attempt=1, worker="w")
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def end(ids: list[Any], barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            try:
                barrier.wait()
                for step_id in ids:
                    assert services.step_succeed(step_id=step_id, attempt=1, output=None, usage=None)
            except BaseException as exc:  # noqa: BLE001  (reported below, in the test's thread)
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=end, args=(queued[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert not errors
        _counts_are_true(plan)
        join = Step.objects.get(plan=plan, key="join")
        assert join.status == "queued" and join.attempt == 1
        assert PlanEvent.objects.filter(plan=plan, step_key="join", type="step.queued").count() == 1


def test_a_refresh_makes_the_slots_true_and_drops_those_of_a_step_no_longer_wide(user: Any) -> None:
    plan = _fan_in(user)
    first = Step.objects.filter(plan=plan, key__in=["s0", "s1", "s2"]).order_by("key")
    for step in first:
        services.step_claim(step_id=step.id, attempt=1, worker="w")
        services.step_succeed(step_id=step.id, attempt=1, output=None, usage=None)
    StepSlot.objects.filter(plan=plan).update(waiting=7)  # wrong, as a bug or an old release might leave them

    readiness.graph_refresh(plan_id=plan.id)
    _counts_are_true(plan)

    Step.objects.filter(plan=plan, key="join").update(depends_on=["s0", "s5"])  # as an edit leaves it
    readiness.graph_refresh(plan_id=plan.id)
    assert not StepSlot.objects.filter(plan=plan).exists()
    assert Step.objects.get(plan=plan, key="join").waiting_on == 1  # s5 has not succeeded


def test_a_wide_plan_runs_through_the_services_a_worker_calls(user: Any) -> None:
    plan = _fan_in(user)
    for step_id, attempt in Step.objects.filter(plan=plan, status="queued").values_list("id", "attempt"):
        services.step_run(step_id=step_id, attempt=attempt, worker="w")
    join = Step.objects.get(plan=plan, key="join")
    services.step_run(step_id=join.id, attempt=join.attempt, worker="w")

    plan.refresh_from_db()
    assert plan.status == "succeeded"
