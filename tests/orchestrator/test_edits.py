"""Editing a running plan, re-running from a step, re-planning, and spawns over a hard cap (issue 10), through a
real worker. The fake agent service counts each step's calls (by step id) and holds a step at a gate until the
test opens it, so a test knows what is running while it edits."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orchestrator import services
from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from tests.conftest import api_client, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def _gate() -> str:
    return f"edit-{uuid.uuid4().hex[:8]}"


def _calls(fake_server: FakeServer, plan: Plan) -> dict[str, int]:
    return {step.key: fake_server.call_count(str(step.id)) for step in Step.objects.filter(plan=plan)}


def _held(fake_server: FakeServer, plan: Plan, key: str) -> None:
    """Wait until step ``key`` is at the fake agent (held at its gate)."""
    step = Step.objects.get(plan=plan, key=key)
    deadline = time.monotonic() + 30
    while fake_server.call_count(str(step.id)) < 1:
        assert time.monotonic() < deadline, f"step {key} never reached the agent"
        time.sleep(0.05)


def _race(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released together by a barrier; their results (or exceptions)."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int, action: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except Exception as exc:  # noqa: BLE001 - handed back to the test, which asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_step_added_and_another_removed_while_the_plan_runs(user: Any, fake_server: FakeServer) -> None:
    gate = _gate()
    steps = [{"key": "first", "agent": "remote", "input": {"gate": gate}},
             {"key": "keep", "agent": "remote", "depends_on": ["first"]},
             {"key": "drop", "agent": "remote", "depends_on": ["keep"]}]
    plan = services.plan_create(owner=user, request="edit me", steps=steps)
    _held(fake_server, plan, "first")
    client = api_client(user)

    added = client.post(f"/api/plans/{plan.id}/steps/", {"steps": [
        {"key": "extra", "agent": "remote", "input": {"n": 1}, "depends_on": ["first"]}]}, format="json")
    removed = client.delete(f"/api/plans/{plan.id}/steps/drop/")
    fake_server.open_gate(gate)

    assert added.status_code == 200, added.json()
    assert removed.status_code == 200, removed.json()
    assert removed.json()["version"] == 2 and removed["ETag"] == '"2"'
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    assert _calls(fake_server, plan) == {"first": 1, "keep": 1, "extra": 1}
    assert set(plan.result) == {"keep", "extra"}  # the edited structure's sinks
    edits = list(PlanEvent.objects.filter(plan=plan, type__in=["plan.edited", "step.added", "step.removed"])
                 .values_list("type", "step_key", "actor_id"))
    assert edits == [("plan.edited", "", user.id), ("step.added", "extra", user.id),
                     ("plan.edited", "", user.id), ("step.removed", "drop", user.id)]


def test_edits_that_would_break_the_plan_are_refused_whole(user: Any, fake_server: FakeServer) -> None:
    gate = _gate()
    steps = [{"key": "first", "agent": "remote", "input": {"gate": gate}},
             {"key": "second", "agent": "remote", "depends_on": ["first"]},
             {"key": "third", "agent": "echo", "depends_on": ["second"]}]
    plan = services.plan_create(owner=user, request="refusals", steps=steps)
    _held(fake_server, plan, "first")
    client = api_client(user)
    url = f"/api/plans/{plan.id}"

    refusals = {
        "plan.step_in_use": client.delete(f"{url}/steps/second/"),
        "plan.unknown_dependency": client.post(f"{url}/edit/", {"remove": ["third"], "add": [
            {"key": "fourth", "agent": "echo", "depends_on": ["third"]}]}, format="json"),
        "plan.cycle": client.post(f"{url}/edit/", {"add": [{"key": "x", "agent": "echo", "depends_on": ["second"]}],
                                                   "change": {"second": {"depends_on": ["x"]}}}, format="json"),
        "plan.unknown_agent": client.post(f"{url}/steps/", {"steps": [{"key": "y", "agent": "ghost"}]},
                                          format="json"),
        "plan.duplicate_step": client.post(f"{url}/steps/", {"steps": [{"key": "second", "agent": "echo"}]},
                                           format="json"),
        "step.not_pending": client.patch(f"{url}/steps/first/", {"input": {"n": 2}}, format="json"),
        "step.not_found": client.delete(f"{url}/steps/nowhere/"),
        "plan.invalid_schema": client.patch(f"{url}/steps/second/", {"agent": 3}, format="json"),
        "plan.bad_version": client.patch(f"{url}/steps/second/", {"input": "x"}, format="json",
                                         HTTP_IF_MATCH="yesterday"),
    }
    fake_server.open_gate(gate)

    assert {code: (r.json()["error"]["code"], r.status_code) for code, r in refusals.items()} == {
        "plan.step_in_use": ("plan.step_in_use", 400),
        "plan.unknown_dependency": ("plan.unknown_dependency", 400), "plan.cycle": ("plan.cycle", 400),
        "plan.unknown_agent": ("plan.unknown_agent", 400), "plan.duplicate_step": ("plan.duplicate_step", 400),
        "step.not_pending": ("step.not_pending", 409), "step.not_found": ("step.not_found", 404),
        "plan.invalid_schema": ("plan.invalid_schema", 400), "plan.bad_version": ("plan.bad_version", 400)}
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED and plan.version == 0
    assert set(Step.objects.filter(plan=plan).values_list("key", flat=True)) == {"first", "second", "third"}
    late = client.post(f"{url}/steps/", {"steps": [{"key": "late", "agent": "echo"}]}, format="json")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "plan.not_running")


def test_two_concurrent_edits_of_one_version_one_wins(user: Any, fake_server: FakeServer) -> None:
    gate = _gate()
    steps = [{"key": "first", "agent": "remote", "input": {"gate": gate}},
             {"key": "second", "agent": "remote", "depends_on": ["first"]}]
    plan = services.plan_create(owner=user, request="race edits", steps=steps)
    _held(fake_server, plan, "first")
    first_client = api_client(user)
    version = first_client.get(f"/api/plans/{plan.id}/")["ETag"]
    clients = [first_client, APIClient()]  # one client per thread, with the same token
    clients[1].credentials(HTTP_AUTHORIZATION=first_client._credentials["HTTP_AUTHORIZATION"])

    def edit(n: int) -> Any:
        return clients[n].patch(f"/api/plans/{plan.id}/steps/second/", {"input": {"by": n}}, format="json",
                                HTTP_IF_MATCH=version)

    results = _race(lambda: edit(0), lambda: edit(1))
    fake_server.open_gate(gate)

    assert sorted(r.status_code for r in results) == [200, 409]
    winner = next(n for n, r in enumerate(results) if r.status_code == 200)
    assert results[1 - winner].json()["error"]["code"] == "plan.edit_conflict"
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED and plan.version == 1
    second = Step.objects.get(plan=plan, key="second")
    assert second.input == {"by": winner} and second.output["input"] == {"by": winner}
    assert PlanEvent.objects.filter(plan=plan, type="plan.edited").count() == 1


def test_an_edit_racing_the_end_of_a_dependency_has_one_outcome(user: Any, fake_server: FakeServer) -> None:
    gate, held = _gate(), _gate()  # ``held`` keeps the unedited second step (and so the plan) running
    old_input = {"v": "old", "gate": held}
    steps = [{"key": "first", "agent": "remote", "input": {"gate": gate}},
             {"key": "second", "agent": "remote", "input": old_input, "depends_on": ["first"]}]
    plan = services.plan_create(owner=user, request="race the end", steps=steps)
    _held(fake_server, plan, "first")
    client = api_client(user)

    results = _race(lambda: fake_server.open_gate(gate),
                    lambda: client.patch(f"/api/plans/{plan.id}/steps/second/", {"input": {"v": "new"}},
                                         format="json"))
    fake_server.open_gate(held)

    response = results[1]
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    second = Step.objects.get(plan=plan, key="second")
    if response.status_code == 200:  # the edit came first: the step ran as edited
        assert second.output["input"] == {"v": "new"} == second.input
    else:  # the step was queued first: the edit is refused, nothing of it written
        assert (response.status_code, response.json()["error"]["code"]) == (409, "step.not_pending")
        assert second.output["input"] == old_input == second.input
        assert not PlanEvent.objects.filter(plan=plan, type="plan.edited").exists()
    assert _calls(fake_server, plan) == {"first": 1, "second": 1}


def test_a_rerun_with_an_edited_input_runs_only_that_step_and_its_dependents(user: Any,
                                                                               fake_server: FakeServer) -> None:
    steps = [{"key": "a", "agent": "remote"},
             {"key": "b", "agent": "remote", "input": {"v": 1}, "depends_on": ["a"]},
             {"key": "c", "agent": "remote", "depends_on": ["b"]},
             {"key": "d", "agent": "remote", "depends_on": ["a"]}]
    plan = wait_for_plan(services.plan_create(owner=user, request="rerun", steps=steps).id)
    assert plan.status == PlanStatus.SUCCEEDED

    client = api_client(user)
    response = client.post(f"/api/plans/{plan.id}/steps/b/rerun/", {"input": {"v": 2}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "running"
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    assert _calls(fake_server, plan) == {"a": 1, "b": 2, "c": 2, "d": 1}
    b = Step.objects.get(plan=plan, key="b")
    assert (b.input, b.output["input"], b.attempt) == ({"v": 2}, {"v": 2}, 2)
    history = list(PlanEvent.objects.filter(plan=plan, step_key="b").values_list("type", "data__attempt"))
    assert [t for t in history if t[0] in ("step.succeeded", "step.rerun")] == [
        ("step.succeeded", 1), ("step.rerun", 1), ("step.succeeded", 2)]
    missing = client.post(f"/api/plans/{plan.id}/steps/nope/rerun/", {}, format="json")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "step.not_found")


def test_a_rerun_removes_what_the_step_spawned_and_spawns_it_again(user: Any) -> None:
    spawn = [{"key": "child", "agent": "echo"}]
    steps = [{"key": "boss", "agent": "emit", "input": {"output": {"spawn": spawn}}},
             {"key": "after", "agent": "echo", "depends_on": ["boss"]}]
    plan = wait_for_plan(services.plan_create(owner=user, request="rerun spawn", steps=steps).id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message

    services.step_rerun(plan_id=plan.id, key="boss", new_input={"output": {"spawn": [
        {"key": "child2", "agent": "echo"}]}})

    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    by_key = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert set(by_key) == {"boss", "after", "child2"}
    assert sorted(by_key["after"].depends_on) == ["boss", "child2"]


def test_the_planner_extends_a_running_plan_within_its_rounds(user: Any, fake_server: FakeServer) -> None:
    steps = [{"key": "first", "agent": "echo", "replan": True},
             {"key": "last", "agent": "echo", "depends_on": ["first"]}]
    plan = services.plan_create(owner=user, request="scenario:replan tag:replan-test", steps=steps, max_replans=1)

    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    by_key = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert set(by_key) == {"first", "first-replan", "more", "last"}
    assert by_key["first-replan"].depends_on == ["first"] and by_key["more"].depends_on == ["first-replan"]
    assert by_key["last"].started_at >= by_key["more"].finished_at  # it waited for what the planner added
    assert fake_server.call_count("chat:replan-test") == 1  # one round: "more" asked for a second, past the limit
    grown = [e.data for e in PlanEvent.objects.filter(plan=plan, type="plan.grown").order_by("id")]
    assert grown == [{"source": "replan_request", "steps": ["first-replan"]}, {"source": "replan", "steps": ["more"]}]
    limit = PlanEvent.objects.get(plan=plan, type="plan.replan_limit")
    assert (limit.step_key, limit.data) == ("more", {"rounds": 1, "max_replans": 1})


def test_a_spawn_or_an_edit_past_the_hard_cap_is_refused_whole(user: Any, fake_server: FakeServer) -> None:
    spawn = [{"key": "costly", "agent": "held_llm"}, {"key": "cheap", "agent": "echo"}]
    steps = [{"key": "boss", "agent": "emit", "input": {"output": {"spawn": spawn}}},
             {"key": "after", "agent": "echo", "depends_on": ["boss"]}]

    plan = wait_for_plan(services.plan_create(owner=user, request="cap", steps=steps, cap_tokens=100).id)

    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "budget.cap_exceeded")
    assert set(Step.objects.filter(plan=plan).values_list("key", flat=True)) == {"boss", "after"}
    assert PlanEvent.objects.get(plan=plan, type="plan.spawn_refused").data["code"] == "budget.cap_exceeded"

    gate = _gate()
    plan = services.plan_create(owner=user, request="cap edit", cap_tokens=100,
                                steps=[{"key": "first", "agent": "remote", "input": {"gate": gate}}])
    _held(fake_server, plan, "first")
    response = api_client(user).post(f"/api/plans/{plan.id}/steps/", {"steps": [
        {"key": "costly", "agent": "held_llm"}]}, format="json")
    fake_server.open_gate(gate)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "budget.cap_exceeded")
    assert wait_for_plan(plan.id).status == PlanStatus.SUCCEEDED
    assert not Step.objects.filter(plan=plan, key="costly").exists()


def test_a_rerun_waits_for_nothing_that_is_still_running(user: Any, fake_server: FakeServer) -> None:
    gate = _gate()
    steps = [{"key": "a", "agent": "remote"},
             {"key": "b", "agent": "remote", "input": {"gate": gate}, "depends_on": ["a"]}]
    plan = services.plan_create(owner=user, request="busy", steps=steps)
    _held(fake_server, plan, "b")

    response = api_client(user).post(f"/api/plans/{plan.id}/steps/a/rerun/", {}, format="json")
    fake_server.open_gate(gate)

    assert (response.status_code, response.json()["error"]["code"]) == (409, "step.rerun_busy")
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED and _calls(fake_server, plan) == {"a": 1, "b": 1}
    assert Step.objects.get(plan=plan, key="a").status == StepStatus.SUCCEEDED


def test_the_admin_adds_changes_and_removes_steps_of_a_running_plan(user: Any, fake_server: FakeServer,
                                                                    django_user_model: Any) -> None:
    from django.test import Client

    admin = django_user_model.objects.create_superuser("stepadmin", "a@example.com", "pw-for-tests")
    client = Client()
    client.force_login(admin)
    gate = _gate()
    plan = services.plan_create(owner=user, request="admin edit", steps=[
        {"key": "first", "agent": "remote", "input": {"gate": gate}},
        {"key": "second", "agent": "remote", "depends_on": ["first"]},
        {"key": "third", "agent": "remote", "depends_on": ["first"]}])
    _held(fake_server, plan, "first")
    second, third = (Step.objects.get(plan=plan, key=k) for k in ("second", "third"))
    form = {"agent": "remote", "input": '{"by": "admin"}', "depends_on": "first", "risk": "low"}

    changed = client.post(f"/admin/orchestrator/step/{second.id}/change/", form)
    cycle = client.post(f"/admin/orchestrator/step/{third.id}/change/", {**form, "depends_on": "third"})
    added = client.post("/admin/orchestrator/step/add/", {**form, "plan": str(plan.id), "key": "fourth"})
    removed = client.post("/admin/orchestrator/step/", {"action": "remove_pending", "_selected_action": [third.id]})
    fake_server.open_gate(gate)

    assert added.status_code == 302, added.context["adminform"].form.errors
    assert changed.status_code == 302 and removed.status_code == 302
    assert cycle.status_code == 200 and "plan.cycle" in cycle.content.decode()
    plan = wait_for_plan(plan.id)
    assert plan.status == PlanStatus.SUCCEEDED, plan.error_message
    steps = {s.key: s for s in Step.objects.filter(plan=plan)}
    assert set(steps) == {"first", "second", "fourth"} and steps["second"].output["input"] == {"by": "admin"}
    assert list(PlanEvent.objects.filter(plan=plan, type="plan.edited").values_list("actor__username", flat=True)
                ) == ["stepadmin"] * 3
    finished = client.get(f"/admin/orchestrator/step/{steps['second'].id}/change/")
    assert finished.status_code == 200 and b'name="agent"' not in finished.content  # read-only once it ran
