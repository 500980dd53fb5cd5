"""Human in the loop: gates from policy and plan, decisions, quorum, timeouts, escalation and races."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.utils import timezone

from approvals import api as approvals
from approvals.models import Approval, ApprovalPolicy
from approvals.services import escalation_webhook_send
from orchestrator import services
from orchestrator.models import PlanEvent, Step
from orchestrator.states import PlanStatus, StepStatus
from organisations.api import tenancy_of
from tests.conftest import start_worker, stop_worker, wait_for_plan
from tests.fakes import FakeMailServer, FakeServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def approver(django_user_model: Any) -> Any:
    return make_approver(django_user_model, "approver")


def make_approver(model: Any, name: str) -> Any:
    person = model.objects.create_user(username=name, password="pw-for-tests", email=f"{name}@example.com",
                                       is_staff=True)
    person.user_permissions.add(Permission.objects.get(codename="decide_approval"))
    tenancy_of(person)  # joins the default organisation now, not inside the first request a test counts
    return model.objects.get(pk=person.pk)  # fresh: permissions are cached per instance


def gated_plan(owner: Any, agent: str = "held", **gate: Any) -> Any:
    """a -> gated -> after; the gate comes from the plan unless a policy is created by the test."""
    return services.plan_create(owner=owner, request="gated plan", steps=[
        {"key": "a", "agent": agent},
        {"key": "gated", "agent": agent, "depends_on": ["a"], "input": {"prompt": "original"}, **gate},
        {"key": "after", "agent": agent, "depends_on": ["gated"]},
    ])


def finish(step: Step) -> None:
    """Drive a held step by hand (no worker consumes the held queue)."""
    step.refresh_from_db()
    services.step_claim(step_id=step.id, attempt=step.attempt, worker="test")
    services.step_succeed(step_id=step.id, attempt=step.attempt, output={"from": step.key}, usage=None)


def step(plan: Any, key: str) -> Step:
    return Step.objects.get(plan=plan, key=key)


def waiting_approval(plan: Any) -> Approval:
    return Approval.objects.get(plan_id=plan.id, status="pending")


def test_a_gated_step_waits_with_a_pending_approval(user: Any) -> None:
    plan = gated_plan(user, approval=True)

    finish(step(plan, "a"))

    gated = step(plan, "gated")
    approval = waiting_approval(plan)
    assert gated.status == StepStatus.WAITING
    assert step(plan, "after").status == StepStatus.PENDING
    assert approval.step_id == gated.id and approval.input == {"prompt": "original"}
    assert approval.context == {"a": {"from": "a"}}
    event = PlanEvent.objects.get(plan=plan, type="approval.required")
    assert event.data["admin_url"] == f"/admin/approvals/approval/{approval.id}/change/"


def test_approve_runs_the_step(user: Any, approver: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))

    approvals.approval_decide(approval_id=waiting_approval(plan).id, user=approver, decision="approve")

    gated = step(plan, "gated")
    assert (gated.status, gated.attempt) == (StepStatus.QUEUED, 1)
    finish(gated)
    finish(step(plan, "after"))
    plan.refresh_from_db()
    assert plan.status == PlanStatus.SUCCEEDED
    decided = PlanEvent.objects.get(plan=plan, type="approval.decided")
    assert (decided.actor, decided.data["decision"]) == (approver, "approved")


def test_edit_then_approve_runs_the_edited_input(user: Any, approver: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))

    approvals.approval_decide(approval_id=waiting_approval(plan).id, user=approver, decision="approve",
                              edited_input={"prompt": "edited"}, comment="tightened the prompt")

    assert step(plan, "gated").input == {"prompt": "edited"}
    assert PlanEvent.objects.filter(plan=plan, type="approval.edited", actor=approver).exists()


def test_an_edit_that_is_not_an_object_is_refused(user: Any, approver: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))

    with pytest.raises(approvals.InvalidEdit):
        approvals.approval_decide(approval_id=waiting_approval(plan).id, user=approver, decision="approve",
                                  edited_input=["not", "an", "object"])  # type: ignore[arg-type]
    assert waiting_approval(plan).status == "pending"


def test_reject_ends_the_step_and_fails_the_plan(user: Any, approver: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))

    approvals.approval_decide(approval_id=waiting_approval(plan).id, user=approver, decision="reject",
                              comment="too risky")

    plan.refresh_from_db()
    assert step(plan, "gated").status == StepStatus.REJECTED
    assert step(plan, "after").status == StepStatus.CANCELLED
    assert (plan.status, plan.error_code) == (PlanStatus.FAILED, "approval.rejected")
    assert "too risky" in plan.error_message


@pytest.mark.parametrize(("on_timeout", "step_status", "approval_status"), [
    ("approve", StepStatus.QUEUED, "approved"),
    ("reject", StepStatus.REJECTED, "rejected"),
    ("fail", StepStatus.FAILED, "failed"),
])
def test_a_timeout_applies_the_policys_default(user: Any, on_timeout: str, step_status: str,
                                               approval_status: str) -> None:
    ApprovalPolicy.objects.create(name="slow", step_key="gated", timeout_seconds=60, on_timeout=on_timeout)
    plan = gated_plan(user)
    finish(step(plan, "a"))

    assert approvals.approvals_expire(now=timezone.now() + timedelta(seconds=30))["timed_out"] == 0
    counts = approvals.approvals_expire(now=timezone.now() + timedelta(seconds=61))

    assert counts["timed_out"] == 1
    assert step(plan, "gated").status == step_status
    assert Approval.objects.get(plan_id=plan.id).status == approval_status
    assert PlanEvent.objects.filter(plan=plan, type="approval.timed_out").count() == 1
    if on_timeout == "fail":
        plan.refresh_from_db()
        assert plan.error_code == "approval.timed_out"


def test_a_quorum_of_two_needs_two_distinct_approvers(user: Any, approver: Any, django_user_model: Any) -> None:
    ApprovalPolicy.objects.create(name="two-people", step_key="gated", required_approvals=2)
    plan = gated_plan(user)
    finish(step(plan, "a"))
    approval_id = waiting_approval(plan).id

    first = approvals.approval_decide(approval_id=approval_id, user=approver, decision="approve")
    with pytest.raises(approvals.ApprovalAlreadyDecided) as again:
        approvals.approval_decide(approval_id=approval_id, user=approver, decision="approve")
    second = approvals.approval_decide(approval_id=approval_id, user=make_approver(django_user_model, "second"),
                                       decision="approve")

    assert (first.status, first.approvals) == ("pending", 1)
    assert again.value.code == "approval.already_voted"
    assert (second.status, second.approvals) == ("approved", 2)
    assert step(plan, "gated").status == StepStatus.QUEUED


def test_the_person_who_started_the_plan_may_not_approve_it(django_user_model: Any) -> None:
    ApprovalPolicy.objects.create(name="four-eyes", step_key="gated", allow_self_approval=False)
    owner = make_approver(django_user_model, "owner")
    plan = gated_plan(owner)
    finish(step(plan, "a"))

    with pytest.raises(approvals.ApprovalForbidden) as refused:
        approvals.approval_decide(approval_id=waiting_approval(plan).id, user=owner, decision="approve")

    assert refused.value.code == "approval.self_approval"
    assert waiting_approval(plan).votes.count() == 0


def test_a_plan_cannot_remove_a_gate_that_policy_requires(user: Any) -> None:
    ApprovalPolicy.objects.create(name="risky-agent", agent="held", min_risk="high")
    plan = services.plan_create(owner=user, request="x", steps=[
        {"key": "calm", "agent": "held", "approval": False},
        {"key": "risky", "agent": "held", "risk": "high", "approval": False}])

    assert step(plan, "calm").status == StepStatus.QUEUED
    assert step(plan, "risky").status == StepStatus.WAITING


def test_two_racing_decisions_give_one_outcome(user: Any, approver: Any, django_user_model: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))
    approval_id = waiting_approval(plan).id
    other = make_approver(django_user_model, "other")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(person: Any, decision: str) -> None:
        barrier.wait()
        try:
            approvals.approval_decide(approval_id=approval_id, user=person, decision=decision)
            outcomes[decision] = "won"
        except approvals.ApprovalAlreadyDecided as exc:
            outcomes[decision] = exc.code
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=args) for args in ((approver, "approve"), (other, "reject"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes.values()) == ["approval.already_decided", "won"]
    winner = next(d for d, outcome in outcomes.items() if outcome == "won")
    expected = StepStatus.QUEUED if winner == "approve" else StepStatus.REJECTED
    assert step(plan, "gated").status == expected
    assert PlanEvent.objects.filter(plan=plan, type="approval.decided").count() == 1


def test_escalation_emails_the_group_and_calls_the_webhook_retrying_a_failing_mail_server(
        user: Any, fake_server: FakeServer, django_user_model: Any, test_agents: str) -> None:
    mail_server = FakeMailServer(failures=2)  # refuses the first two tries (451), then accepts
    notifier, _ = start_worker("notify", test_agents, env={
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mail_server.port), "WEBHOOK_PRIVATE_NETWORKS": "127.0.0.1/32"})
    try:
        group = Group.objects.create(name="escalation")
        make_approver(django_user_model, "boss").groups.add(group)
        ApprovalPolicy.objects.create(name="escalating", step_key="gated", timeout_seconds=3600,
                                      escalate_after_seconds=600, escalate_group=group,
                                      escalate_webhook=f"{fake_server.url}/webhook")
        plan = gated_plan(user)
        finish(step(plan, "a"))

        counts = approvals.approvals_expire(now=timezone.now() + timedelta(seconds=601))
        again = approvals.approvals_expire(now=timezone.now() + timedelta(seconds=700))
        deadline = time.monotonic() + 60
        while Approval.objects.filter(escalation_mail_pending=True).exists() or not mail_server.messages:
            assert time.monotonic() < deadline, f"no mail after {mail_server.attempts} tries"
            time.sleep(0.2)
    finally:
        stop_worker(notifier)
        mail_server.close()

    assert (counts["escalated"], again["escalated"]) == (1, 0)
    assert mail_server.attempts == 3 and len(mail_server.messages) == 1  # retried twice, delivered once
    assert mail_server.messages[0].rcpt_tos == ["boss@example.com"]
    assert b"gated" in mail_server.messages[0].content
    assert fake_server.webhooks[-1]["approval_id"] == str(waiting_approval(plan).id)
    assert not Approval.objects.filter(escalation_webhook_pending=True).exists()
    assert PlanEvent.objects.filter(plan=plan, type="approval.escalated").count() == 1


def test_an_escalation_webhook_to_loopback_or_metadata_is_refused_by_the_ssrf_guard(
        user: Any, fake_server: FakeServer, django_user_model: Any) -> None:
    before = len(fake_server.webhooks)
    ApprovalPolicy.objects.create(name="escalating", step_key="gated", timeout_seconds=3600,
                                  escalate_after_seconds=600, escalate_webhook=f"{fake_server.url}/webhook")
    plan = gated_plan(user)
    finish(step(plan, "a"))

    counts = approvals.approvals_expire(now=timezone.now() + timedelta(seconds=601))
    approval = waiting_approval(plan)
    escalation_webhook_send(approval_id=approval.id)  # what the notify task runs

    assert counts["escalated"] == 1  # escalated (and recorded), but nothing was sent to loopback
    assert len(fake_server.webhooks) == before
    assert not Approval.objects.get(id=approval.id).escalation_webhook_pending  # refused: never retried


def test_cancelling_a_plan_closes_its_pending_approval(user: Any) -> None:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))

    services.plan_cancel(plan_id=plan.id, actor=user)

    assert Approval.objects.get(plan_id=plan.id).status == "cancelled"
    assert step(plan, "gated").status == StepStatus.CANCELLED


@pytest.mark.e2e
@pytest.mark.usefixtures("idle_worker")
def test_only_the_gated_branch_waits_while_its_sibling_finishes(user: Any, approver: Any) -> None:
    plan = services.plan_create(owner=user, request="two branches", steps=[
        {"key": "gated", "agent": "remote", "approval": True, "input": {"prompt": "original"}},
        {"key": "after_gated", "agent": "remote", "depends_on": ["gated"]},
        {"key": "free", "agent": "remote"},
        {"key": "after_free", "agent": "remote", "depends_on": ["free"]},
    ])

    deadline = timezone.now() + timedelta(seconds=30)
    while step(plan, "after_free").status != StepStatus.SUCCEEDED and timezone.now() < deadline:
        pass
    assert step(plan, "after_free").status == StepStatus.SUCCEEDED
    assert step(plan, "gated").status == StepStatus.WAITING
    assert step(plan, "after_gated").status == StepStatus.PENDING

    approvals.approval_decide(approval_id=waiting_approval(plan).id, user=approver, decision="approve",
                              edited_input={"prompt": "edited"})
    plan = wait_for_plan(plan.id)

    assert plan.status == PlanStatus.SUCCEEDED
    assert step(plan, "gated").output["input"] == {"prompt": "edited"}
