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
