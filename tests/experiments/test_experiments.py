"""A/B experiments end to end, through a real worker: assignment, scoring, the report and the stop rule."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from celery import current_app
from django.contrib.auth.models import Permission

from approvals import api as approvals
from approvals.models import Approval, ApprovalPolicy
from experiments import hooks, services
from experiments.models import Assignment, Experiment, ExperimentEvent, Variant
from orchestrator import services as orchestrator
from orchestrator.models import PlanEvent, Step
from tests.conftest import api_client, wait_for_plan

pytestmark = pytest.mark.django_db(transaction=True)


def make_experiment(**fields: Any) -> Experiment:
    """Two variants of the research template's synthesis: the control on a pricier model, and a cheap
    model whose prompt carries an offline quality marker of 2 (the offline judge scores it 1-3, not 6-8)."""
    experiment = Experiment.objects.create(**{
        "name": "synthesis", "template": "research", "agent": "synthesis_agent", "sticky": "owner",
        "judge_agent": "judge", "stop_metric": "judge_score", "stop_alpha": 0.01, "stop_min_samples": 5, **fields})
    Variant.objects.create(experiment=experiment, name="strong", weight=50, model="exp-strong")
    Variant.objects.create(experiment=experiment, name="weak", weight=50, model="exp-cheap",
                           system_prompt="You combine results into one answer. [quality=2]")
    hooks.forget()
    return experiment


def wait_until(condition: Any, *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def make_approver(django_user_model: Any) -> Any:
    person = django_user_model.objects.create_user(username="approver", password="pw", is_staff=True)
    person.user_permissions.add(Permission.objects.get(codename="decide_approval"),
                                Permission.objects.get(codename="view_experiment"))
    return django_user_model.objects.get(pk=person.pk)


def test_a_50_50_experiment_splits_sticky_per_owner_reports_every_score_and_stops_the_worse_variant(
        celery_worker: str, django_user_model: Any) -> None:
    # given: a 50/50 experiment on the research template, its synthesis gated by approval, and 20 people
    experiment = make_experiment()
    ApprovalPolicy.objects.create(name="gate-synthesis", template="research", step_key="synthesis")
    approver = make_approver(django_user_model)
    owners = [django_user_model.objects.create_user(id=70_000 + i, username=f"owner{i}", password="pw")
              for i in range(20)]

    # when: each makes two research plans (40 in all)
    plans = [orchestrator.plan_create(owner=owner, request=f"Compare batteries of kind {i}-{n} and how they work",
                                      template="research")
             for n in range(2) for i, owner in enumerate(owners)]

    # then: about half go to each variant, and both plans of a person get the same one
    assigned = {a.plan_id: a for a in Assignment.objects.select_related("variant")}
    assert len(assigned) == 40
    split = Counter(a.variant.name for a in assigned.values())
    assert 12 <= split["strong"] <= 28 and split["strong"] + split["weak"] == 40, split
    by_owner: dict[int, set[str]] = {}
    for plan in plans:
        by_owner.setdefault(plan.owner_id, set()).add(assigned[plan.id].variant.name)
    assert all(len(names) == 1 for names in by_owner.values())

    # when: people decide the 40 synthesis approvals: a quarter rejected, a quarter edited, half as they were
    wait_until(lambda: Approval.objects.filter(status="pending").count() == 40, what="40 pending approvals")
    for i, plan in enumerate(plans):
        approval = Approval.objects.get(plan_id=plan.id, status="pending")
        if i % 4 == 0:
            approvals.approval_decide(approval_id=approval.id, user=approver, decision="reject")
        elif i % 4 == 1:
            approvals.approval_decide(approval_id=approval.id, user=approver, decision="approve",
                                      edited_input={"prompt": f"Answer briefly: plan {i}"})
        else:
            approvals.approval_decide(approval_id=approval.id, user=approver, decision="approve")
    for plan in plans:
        wait_for_plan(plan.id, timeout=60)

    # then: the synthesis steps ran with their variant's model and prompt, marked with the variant
    for plan in plans:
        synthesis = Step.objects.get(plan=plan, key="synthesis")
        if synthesis.status != "succeeded":
            continue
        variant = assigned[plan.id].variant
        assert synthesis.usage["model"] == f"offline/{variant.model}"
        assert synthesis.usage["variant"] == f"synthesis/{variant.name}"
        assert ("[quality=2]" in synthesis.output["text"]) == (variant.name == "weak")
        event = PlanEvent.objects.get(plan=plan, step_key="synthesis", type="step.succeeded")
        assert event.data["variant"] == f"synthesis/{variant.name}"

    # when: the evaluator scores the ended plans and the worker's judge scores the succeeded ones
    assert services.experiments_evaluate()["scored"] == 40
    succeeded = Assignment.objects.filter(outcome="succeeded")
    assert succeeded.count() == 30
    wait_until(lambda: not succeeded.filter(judge_score__isnull=True).exists(), what="the judge's scores")
    services.experiments_evaluate()

    # then: the report shows both variants' cost, latency, approval outcomes and judge scores, with intervals
    response = api_client(approver).get(f"/api/experiments/{experiment.id}/report/")
    assert response.status_code == 200, response.content
    report = {v["name"]: v for v in response.json()["variants"]}
    for name in ("strong", "weak"):
        variant = report[name]
        assert variant["plans"] == split[name] and variant["scored"] == split[name]
        assert variant["cost"]["value"] > 0 and variant["cost"]["low"] <= variant["cost"]["value"]
        assert variant["latency"]["value"] > 0 and variant["latency"]["high"] >= variant["latency"]["value"]
        approvals_seen = variant["approvals"]
        assert approvals_seen["rejected"] > 0 and approvals_seen["edited"] > 0 and approvals_seen["approved"] > 0
        assert sum(approvals_seen.values()) == split[name]
        assert variant["failure_rate"]["value"] == approvals_seen["rejected"] / split[name]
        assert 0 <= variant["failure_rate"]["low"] <= variant["failure_rate"]["high"] <= 1
    assert report["strong"]["cost"]["value"] > report["weak"]["cost"]["value"]  # the pricier model
    assert 6 <= report["strong"]["judge_score"]["value"] <= 8
    assert 1 <= report["weak"]["judge_score"]["value"] <= 3
    assert report["weak"]["judge_score"]["high"] < report["strong"]["judge_score"]["low"]

    # and: the stop rule ended the weak variant, once, as an event
    assert report["weak"]["status"] == "stopped" and report["strong"]["status"] == "running"
    assert "judge_score" in report["weak"]["stopped_reason"]
    stopped = ExperimentEvent.objects.get(experiment=experiment, type="experiment.variant_stopped")
    assert stopped.data["variant"] == "weak" and stopped.data["against"] == "strong"
    assert stopped.data["p_value"] < 0.01
    services.experiments_evaluate()
    assert ExperimentEvent.objects.filter(type="experiment.variant_stopped").count() == 1

    # and: new plans, even of people who had the weak variant, now get the strong one
    weak_owner = next(p.owner for p in plans if assigned[p.id].variant.name == "weak")
    later = orchestrator.plan_create(owner=weak_owner, request="Compare later batteries", template="research")
    assert Assignment.objects.get(plan_id=later.id).variant.name == "strong"
    # (left waiting at its synthesis gate: cancelling it would leave a call in flight for the end-of-test flush)
    wait_until(lambda: Approval.objects.filter(plan_id=later.id, status="pending").exists(), what="the gate")


def test_sticky_per_plan_draws_each_plan_and_a_plan_without_the_template_takes_no_part(
        celery_worker: str, user: Any) -> None:
    make_experiment(sticky="plan")
    plans = [orchestrator.plan_create(owner=user, request=f"q{i}", template="research") for i in range(24)]
    other = orchestrator.plan_create(owner=user, request="explicit", steps=[{"key": "a", "agent": "echo"}])
    names = Counter(Assignment.objects.filter(plan_id__in=[p.id for p in plans]).values_list("variant__name",
                                                                                           flat=True))
    assert set(names) == {"strong", "weak"}  # one person, both variants: drawn per plan
    assert not Assignment.objects.filter(plan_id=other.id).exists()
    for plan in [*plans, other]:
        wait_for_plan(plan.id)

    # when: beat's task runs on the worker (scheduler queue), and the judge's on the agents queue
    current_app.send_task("experiments.evaluate")
    scored = Assignment.objects.filter(judge_score__isnull=False)
    wait_until(lambda: scored.count() == 24, what="24 plans scored and judged by the worker")
    # then: a duplicate judge delivery changes nothing (the plan is judged once)
    first = scored.first()
    assert first is not None
    assert services.assignment_judge(assignment_id=first.id) is None
    assert Assignment.objects.get(id=first.id).judge_tries == 1


def test_an_agent_variant_replaces_the_experiments_agent_in_the_plans_steps(celery_worker: str, user: Any) -> None:
    experiment = Experiment.objects.create(name="swap", template="", agent="echo", judge_agent="")
    Variant.objects.create(experiment=experiment, name="noop", weight=1, agent="noop")
    plan = orchestrator.plan_create(owner=user, request="swap", steps=[{"key": "a", "agent": "echo"}])
    assert Step.objects.get(plan=plan).agent == "noop"
    assert wait_for_plan(plan.id).status == "succeeded"


def test_the_api_lists_experiments_and_refuses_bad_ids_and_people_without_the_permission(
        user: Any, django_user_model: Any) -> None:
    experiment = make_experiment()
    viewer = api_client(make_approver(django_user_model))
    listed = viewer.get("/api/experiments/").json()
    assert [e["name"] for e in listed] == ["synthesis"]
    assert {v["name"] for v in listed[0]["variants"]} == {"strong", "weak"}
    missing = viewer.get("/api/experiments/999999/report/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "experiment.not_found"
    assert viewer.get("/api/experiments/abc/report/").json()["error"]["code"] == "experiment.not_found"
    refused = api_client(user).get(f"/api/experiments/{experiment.id}/report/")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "experiment.forbidden"


def test_the_admin_shows_an_experiments_report(django_user_model: Any, client: Any) -> None:
    experiment = make_experiment()
    admin_user = django_user_model.objects.create_superuser(username="root", password="pw")
    client.force_login(admin_user)
    page = client.get(f"/admin/experiments/experiment/{experiment.id}/report/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Report: synthesis" in text and "<td>strong</td>" in text and "<td>weak</td>" in text
    assert "judge_score at alpha 0.01" in text
    listing = client.get("/admin/experiments/experiment/").content.decode()
    assert f"/admin/experiments/experiment/{experiment.id}/report/" in listing
