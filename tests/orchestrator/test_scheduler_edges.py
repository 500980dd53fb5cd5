"""The scheduler's edges, against the real database without a worker: budgets across siblings, the
requeue racing a claim, the step model over REST, one definition of readiness, and the hot path's queries."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Approval, ApprovalPolicy
from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.services import readiness
from orchestrator.states import STEP_UNSUCCESSFUL, StepStatus
from tests.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def steps_of(plan: Plan) -> dict[str, Step]:
    return {step.key: step for step in Step.objects.filter(plan=plan)}


def test_parallel_roots_against_a_hard_cap_run_only_what_fits(user: Any) -> None:
    from agents.api import agent_estimate

    each = agent_estimate("held_llm", {"prompt": "go"}, {}).tokens
    plan = services.plan_create(owner=user, request="capped", cap_tokens=2 * each + each // 2,
                                steps=[{"key": key, "agent": "held_llm", "input": {"prompt": "go"}} for key in "abc"])

    statuses = sorted(step.status for step in steps_of(plan).values())
    assert statuses == [StepStatus.FAILED, StepStatus.QUEUED, StepStatus.QUEUED]
    failed = Step.objects.get(plan=plan, status=StepStatus.FAILED)
    assert failed.error_code == "budget.cap_exceeded"


def test_a_claim_racing_the_requeue_leaves_one_running_attempt(user: Any, settings: Any) -> None:
    settings.ORCH_REQUEUE_AFTER = 0  # every queued step's message looks lost to the reconciler
    for _ in range(10):
        plan = services.plan_create(owner=user, request="race", steps=[{"key": "a", "agent": "held"}])
        step = steps_of(plan)["a"]
        barrier = threading.Barrier(2)

        def claim(step_id: uuid.UUID = step.id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            services.step_claim(step_id=step_id, attempt=1, worker="w")
            connection.close()

        def requeue(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            services.reconcile()
            connection.close()

        threads = [threading.Thread(target=claim), threading.Thread(target=requeue)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        step.refresh_from_db()
        assert (step.status, step.attempt, step.worker) == (StepStatus.RUNNING, 1, "w")
        assert PlanEvent.objects.filter(plan=plan, type="step.started").count() == 1


def test_requeues_are_capped_and_end_undeliverable(user: Any, settings: Any) -> None:
    settings.ORCH_MAX_REQUEUES = 2
    plan = services.plan_create(owner=user, request="nobody listens", steps=[{"key": "a", "agent": "held"}])
    later = timezone.now()
    for _ in range(3):
        later += timedelta(hours=1)
        services.reconcile(now=later)

    step = steps_of(plan)["a"]
    plan.refresh_from_db()
    assert (step.status, step.error_code, step.requeues) == (StepStatus.FAILED, "step.undeliverable", 2)
    assert plan.status == "failed" and plan.error_code == "step.undeliverable"


def test_approval_and_risk_given_over_rest_gate_the_steps(user: Any) -> None:
    ApprovalPolicy.objects.create(name="high risk", min_risk="high")
    response = api_client(user).post("/api/plans/", {"request": "gated", "steps": [
        {"key": "asked", "agent": "held", "approval": True},
        {"key": "risky", "agent": "held", "risk": "high"},
        {"key": "plain", "agent": "held"}]}, format="json")

    assert response.status_code == 201, response.json()
    steps = {step["key"]: step["status"] for step in response.json()["steps"]}
    assert steps == {"asked": "waiting", "risky": "waiting", "plain": "queued"}
    assert Approval.objects.filter(plan_id=response.json()["id"], status="pending").count() == 2


def test_an_unknown_step_field_over_rest_is_refused_not_dropped(user: Any) -> None:
    response = api_client(user).post("/api/plans/", {"request": "typo", "steps": [
        {"key": "a", "agent": "held", "aproval": True}]}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "plan.invalid_schema"
    assert "aproval" in response.json()["error"]["message"]
    assert not Plan.objects.exists()


def _random_plan(rng: random.Random, owner: Any, size: int) -> tuple[Plan, dict[str, list[str]], dict[str, str]]:
    """A random DAG whose steps carry random statuses consistent with a run in progress."""
    plan = Plan.objects.create(owner=owner, request="generated", status="running")
    deps: dict[str, list[str]] = {}
    status: dict[str, str] = {}
    for i in range(size):
        key = f"s{i}"
        deps[key] = [f"s{j}" for j in rng.sample(range(i), rng.randint(0, min(3, i)))] if i else []
        upstream = [status[d] for d in deps[key]]
        if all(s == "succeeded" for s in upstream):
            status[key] = rng.choice(["pending", "queued", "running", "succeeded", "succeeded", "failed", "waiting"])
        else:
            status[key] = rng.choice(["pending", "pending", "cancelled"])
    Step.objects.bulk_create(Step(plan=plan, key=k, agent="held", depends_on=deps[k], status=status[k])
                             for k in deps)
    return plan, deps, status


def test_readiness_in_sql_agrees_with_its_definition_on_generated_dags(user: Any) -> None:
    rng = random.Random(7)
    for _ in range(25):
        plan, deps, status = _random_plan(rng, user, rng.randint(1, 40))
        ids = {step.key: step.id for step in Step.objects.filter(plan=plan)}
        expected_ready = {k for k, d in deps.items()
                          if status[k] == "pending" and all(status[x] == "succeeded" for x in d)}
        doomed: set[str] = set()
        changed = True
        while changed:  # the definition: a pending step behind an unsuccessful (or doomed) one can never run
            changed = False
            for k, d in deps.items():
                if status[k] == "pending" and k not in doomed and any(
                        status[x] in {str(s) for s in STEP_UNSUCCESSFUL} or x in doomed for x in d):
                    doomed.add(k)
                    changed = True

        graph = readiness.graph_refresh(plan_id=plan.id)  # the counts a change leaves (bulk_create keeps none)
        assert set(graph.ready()) == {ids[k] for k in expected_ready}
        assert set(readiness.steps_ready(plan_id=plan.id)) == {ids[k] for k in expected_ready}
        assert set(graph.doomed()) == {ids[k] for k in doomed}
        counts = {s.key: (s.waiting_on, sorted(s.dependents)) for s in Step.objects.filter(plan=plan)}
        assert counts == {k: (sum(status[d] != "succeeded" for d in deps[k]),
                              sorted(x for x in deps if k in deps[x])) for k in deps}


def test_the_claim_and_a_step_end_take_a_fixed_number_of_queries(user: Any, django_assert_num_queries: Any) -> None:
    plan = services.plan_create(owner=user, request="hot path", steps=[
        {"key": "a", "agent": "held"}, {"key": "x", "agent": "held"},
        {"key": "b", "agent": "held", "depends_on": ["a", "x"]}])
    a, x, b = steps_of(plan)["a"], steps_of(plan)["x"], steps_of(plan)["b"]

    # the claim: one statement (a root has no context to read; its audit entry is written by a trigger)
    with django_assert_num_queries(1):
        services.step_claim(step_id=a.id, attempt=1, worker="w")
    services.step_claim(step_id=x.id, attempt=1, worker="w")
    # a success that frees nothing, whatever the plan's size: one statement in autocommit that shares the
    # plan's lock, records it and its event, and counts its dependents down
    with django_assert_num_queries(1):
        services.step_succeed(step_id=a.id, attempt=1, output="a", usage=None)
    # one that frees a dependent: the same, then a transaction under the plan's lock (BEGIN, the lock, one
    # policy read, one step read for the gate, the queueing, COMMIT)
    with django_assert_num_queries(7):
        services.step_succeed(step_id=x.id, attempt=1, output="x", usage=None)
    assert Step.objects.get(id=b.id).status == "queued"
    with django_assert_num_queries(1):  # a claim with dependencies reads their outputs in the same statement
        claimed = services.step_claim(step_id=b.id, attempt=1, worker="w")
    assert claimed is not None and claimed.context == {"a": "a", "x": "x"}
    # the plan's last success: its statement and a check that the plan has settled, then under the plan's lock
    # (BEGIN, the lock, the check again, one read of the failed steps and the sinks, the plan's end and its
    # event, COMMIT), then, committed, its owner's webhooks looked up (the owner, BEGIN, the endpoints, COMMIT)
    with django_assert_num_queries(13):
        services.step_succeed(step_id=b.id, attempt=1, output="b", usage=None)
    assert Plan.objects.values_list("status", "result").get(id=plan.id) == ("succeeded", "b")


def test_the_counts_stay_true_while_random_dags_run_in_random_order(user: Any) -> None:
    """Steps claimed and ended in random interleavings, most through the shared fast path: after every end,
    each pending step's count is the number of its dependencies not yet succeeded, every step runs once,
    and the plan succeeds with its sinks' outputs."""
    rng = random.Random(13)
    for _ in range(6):
        size = rng.randint(5, 30)
        spec = [{"key": f"s{i}", "agent": "held",
                 "depends_on": [f"s{j}" for j in rng.sample(range(i), rng.randint(0, min(3, i)))]}
                for i in range(size)]
        plan = services.plan_create(owner=user, request="random", steps=spec)
        deps = {s["key"]: s["depends_on"] for s in spec}
        ran: list[str] = []
        while True:
            queued = list(Step.objects.filter(plan=plan, status="queued").values_list("id", "attempt", "key"))
            if not queued:
                break
            rng.shuffle(queued)
            batch = queued[:rng.randint(1, len(queued))]
            for step_id, attempt, _ in batch:  # several claimed before any ends: they end side by side
                assert services.step_claim(step_id=step_id, attempt=attempt, worker="w") is not None
            for step_id, attempt, key in batch:
                assert services.step_succeed(step_id=step_id, attempt=attempt, output={"key": key}, usage=None)
                ran.append(key)
                status = dict(Step.objects.filter(plan=plan).values_list("key", "status"))
                for row in Step.objects.filter(plan=plan, status="pending"):
                    assert row.waiting_on == sum(status[d] != "succeeded" for d in deps[row.key]), row.key
        plan.refresh_from_db()
        sinks = sorted(k for k in deps if not any(k in d for d in deps.values()))
        assert sorted(ran) == sorted(deps) and plan.status == "succeeded"
        assert plan.result == ({"key": sinks[0]} if len(sinks) == 1 else {k: {"key": k} for k in sinks})


def test_a_worker_runs_the_step_its_success_frees_itself_without_a_message(user: Any) -> None:
    """step_run down a chain a -> b -> c (all on one queue, played in this process): b and c are claimed for this
    thread in the transaction that queues them, so no run_step message goes out for them (before: a message per
    step, which another thread then claimed as a no-op), and the whole chain runs on this one delivery."""
    from celery.signals import before_task_publish

    plan = services.plan_create(owner=user, request="chain", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held", "depends_on": ["a"]},
        {"key": "c", "agent": "held", "depends_on": ["b"]}, {"key": "x", "agent": "noop", "depends_on": ["a"]}])
    a = steps_of(plan)["a"]
    sent: list[str] = []

    def note(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers and headers.get("task") == "orchestrator.run_step":
            sent.append(headers.get("argsrepr") or "")

    before_task_publish.connect(note, weak=False)
    try:
        services.step_run(step_id=a.id, attempt=1, worker="here")
    finally:
        before_task_publish.disconnect(note)

    steps = steps_of(plan)
    assert {k: (s.status, s.attempt, s.worker) for k, s in steps.items() if k != "x"} == {
        "a": ("succeeded", 1, "here"), "b": ("succeeded", 1, "here"), "c": ("succeeded", 1, "here")}
    assert [m for m in sent if "step=b " in m or "step=c " in m] == []
    assert [m for m in sent if "step=x " in m]  # a step for another queue still gets its message
    started = PlanEvent.objects.filter(plan_id=plan.id, type="step.started").values_list("step_key", "data")
    assert {key: data["worker"] for key, data in started if key != "x"} == {"a": "here", "b": "here", "c": "here"}


def test_a_free_thread_takes_the_oldest_queued_steps_of_its_queue(user: Any, monkeypatch: Any,
                                                                  settings: Any) -> None:
    """step_run given the queue its delivery came from: after its own step, the thread claims and runs the steps of
    that queue queued longest, of any plan, in order; their messages, when they come, claim nothing (and find
    nothing more to take). A step of another queue is left to its own message; a worker asked to stop (a warm
    shutdown sets Celery's should_stop to the exit code, 0) takes nothing more."""
    from celery.worker import state as worker_state

    from orchestrator.services import pulls

    settings.ORCH_PULL_IDLE = 0  # every pull asks the database (test_hop.py shows the pause after an empty one)
    monkeypatch.setattr(pulls, "_pull_idle_until", {})
    first = services.plan_create(owner=user, request="wide", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held"},
        {"key": "x", "agent": "remote_chaos"}])  # its queue is consumed only in tests/test_chaos.py
    second = services.plan_create(owner=user, request="later", steps=[{"key": "c", "agent": "held"}])
    services.step_run(step_id=steps_of(first)["a"].id, attempt=1, worker="w", queue="held")

    ran = sorted((s.started_at, s.key, s.status, s.attempt, s.worker)
                 for s in Step.objects.filter(plan__in=[first, second]).exclude(key="x"))
    assert [row[1:] for row in ran] == [("a", "succeeded", 1, "w"), ("b", "succeeded", 1, "w"),
                                        ("c", "succeeded", 1, "w")]
    assert steps_of(first)["x"].status == "queued"
    services.step_run(step_id=steps_of(first)["b"].id, attempt=1, worker="late", queue="held")  # b's message
    assert steps_of(first)["b"].worker == "w" and steps_of(first)["x"].status == "queued"
    assert PlanEvent.objects.filter(plan_id__in=[first.id, second.id], type="step.started").count() == 3

    third = services.plan_create(owner=user, request="stopping", steps=[
        {"key": "d", "agent": "held"}, {"key": "e", "agent": "held"}])
    monkeypatch.setattr(worker_state, "should_stop", 0)
    services.step_run(step_id=steps_of(third)["d"].id, attempt=1, worker="w", queue="held")
    assert {k: s.status for k, s in steps_of(third).items()} == {"d": "succeeded", "e": "queued"}
