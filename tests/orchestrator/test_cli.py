"""manage.py orchestrate: live progress, the approval hint, --auto-approve, and one-line errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command

from approvals.models import Approval, ApprovalPolicy
from orchestrator.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.e2e
@pytest.mark.usefixtures("idle_worker")
def test_the_research_demo_pauses_for_approval_and_auto_approves(capsys: pytest.CaptureFixture[str]) -> None:
    ApprovalPolicy.objects.create(name="research-synthesis", template="research", step_key="synthesis")

    call_command("orchestrate", "Why is the sky blue?", "--template", "research", "--follow", "--auto-approve",
                 "--timeout", "60")

    out = capsys.readouterr().out
    approval = Approval.objects.get()
    assert f"/admin/approvals/approval/{approval.id}/change/" in out
    assert f"/api/approvals/{approval.id}/approve/" in out
    assert "--auto-approve: cli-approver approved 'synthesis'" in out
    assert "ran in parallel: reasoning and search" in out
    assert (approval.status, approval.decided_by.username) == ("approved", "cli-approver")
    assert Plan.objects.get().status == "succeeded"


def test_an_unknown_template_is_a_one_line_error(user: Any) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("orchestrate", "x", "--template", "nope")

    assert str(caught.value).startswith("plan.unknown_template: no workflow template named 'nope'")
    assert not Plan.objects.exists()


def test_a_bad_input_option_is_a_one_line_error() -> None:
    with pytest.raises(CommandError, match="--input takes NAME=VALUE"):
        call_command("orchestrate", "x", "--template", "research", "--input", "oops")


@pytest.mark.e2e
@pytest.mark.usefixtures("idle_worker")
def test_manage_py_plan_reruns_a_step_and_edits_with_one_line_errors(user: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator import services
    from orchestrator.models import Step
    from tests.conftest import wait_for_plan

    plan = wait_for_plan(services.plan_create(owner=user, request="cli", steps=[
        {"key": "a", "agent": "echo"}, {"key": "b", "agent": "echo", "depends_on": ["a"]}]).id)

    call_command("plan", "--user", user.username, "rerun", str(plan.id), "b", "--input", '{"n": 2}', "--follow")

    assert "rerun done; it is running (version 1)" in capsys.readouterr().out
    plan = wait_for_plan(plan.id)
    assert plan.status == "succeeded" and Step.objects.get(plan=plan, key="b").output["input"] == {"n": 2}
    with pytest.raises(CommandError) as finished:
        call_command("plan", "edit", str(plan.id), "--add", '{"key": "c", "agent": "echo"}')
    assert str(finished.value).startswith("plan.not_running: ")
    with pytest.raises(CommandError) as bad:
        call_command("plan", "edit", str(plan.id), "--change", "b={nope")
    assert str(bad.value).startswith("--change b is not JSON")
    with pytest.raises(CommandError) as retry:
        call_command("plan", "retry", str(plan.id))
    assert str(retry.value).startswith("plan.not_retryable: ")
