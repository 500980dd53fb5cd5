"""Approvals over the REST API, the guide's /workflow/{id}/approve, and the Django admin queue."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals.models import Approval
from orchestrator import services
from orchestrator.models import Step
from orchestrator.states import StepStatus
from tests.approvals.test_approvals import finish, gated_plan, make_approver, step, waiting_approval
from tests.conftest import ARTIFACTS, api_client, wait_for_plan

pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture
def approver(django_user_model: Any) -> Any:
    return make_approver(django_user_model, "approver")


@pytest.fixture
def waiting(user: Any) -> Approval:
    plan = gated_plan(user, approval=True)
    finish(step(plan, "a"))
    return waiting_approval(plan)


def test_approvers_list_pending_approvals(waiting: Approval, approver: Any) -> None:
    response = api_client(approver).get("/api/approvals/?status=pending")

    assert response.status_code == 200
    [listed] = response.json()
    assert (listed["id"], listed["step_key"], listed["input"]) == (str(waiting.id), "gated", {"prompt": "original"})


def test_approve_with_an_edited_input_over_the_api(waiting: Approval, approver: Any) -> None:
    response = api_client(approver).post(f"/api/approvals/{waiting.id}/approve/",
                                     {"edited_input": {"prompt": "better"}, "comment": "ok"}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["edited_input"]) == ("approved", {"prompt": "better"})
    assert Step.objects.get(id=waiting.step_id).input == {"prompt": "better"}


def test_reject_over_the_api_and_a_second_decision_is_a_409(waiting: Approval, approver: Any,
                                                             django_user_model: Any) -> None:
    first = api_client(approver).post(f"/api/approvals/{waiting.id}/reject/", {"comment": "no"}, format="json")
    second = api_client(make_approver(django_user_model, "late")).post(f"/api/approvals/{waiting.id}/approve/")

    assert (first.status_code, first.json()["status"]) == (200, "rejected")
    assert (second.status_code, second.json()["error"]["code"]) == (409, "approval.already_decided")
    assert Step.objects.get(id=waiting.step_id).status == StepStatus.REJECTED


@pytest.mark.parametrize("body", [{"edited_input": "not an object"}, {"edited_input": [1, 2]},
                                  {"comment": ["x"]}])
def test_a_bad_decision_body_is_a_400(waiting: Approval, approver: Any, body: dict[str, Any]) -> None:
    response = api_client(approver).post(f"/api/approvals/{waiting.id}/approve/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid", "approval.invalid_input")
    assert Approval.objects.get(id=waiting.id).status == "pending"


def test_an_approval_you_may_not_see_is_a_404(waiting: Approval, django_user_model: Any) -> None:
    stranger = django_user_model.objects.create_user(username="stranger", password="pw-for-tests")

    api = api_client(stranger)
    assert api.get(f"/api/approvals/{waiting.id}/").status_code == 404
    assert api.post(f"/api/approvals/{waiting.id}/approve/").status_code == 404
    assert api.get("/api/approvals/").json() == []
    assert api.post(f"/workflow/{waiting.plan_id}/approve", {"decision": "approve"}, format="json").status_code == 404


def test_the_owner_sees_but_may_not_decide_without_the_permission(waiting: Approval, user: Any) -> None:
    api = api_client(user)

    assert api.get(f"/api/approvals/{waiting.id}/").status_code == 200
    response = api.post(f"/api/approvals/{waiting.id}/approve/")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "approval.forbidden")


def test_the_guides_workflow_approve_endpoint(waiting: Approval, approver: Any) -> None:
    api = api_client(approver)

    bad = api.post(f"/workflow/{waiting.plan_id}/approve", {"decision": "maybe"}, format="json")
    good = api.post(f"/workflow/{waiting.plan_id}/approve", {"decision": "approve", "comment": "go"}, format="json")

    assert bad.status_code == 400
    assert (good.status_code, good.json()["result"]) == (200, "resumed")
    assert Step.objects.get(id=waiting.step_id).status == StepStatus.QUEUED


def test_the_admin_queue_is_only_for_approvers(waiting: Approval, approver: Any, django_user_model: Any) -> None:
    staff = django_user_model.objects.create_user(username="staff", password="pw-for-tests", is_staff=True)
    as_staff, as_approver = Client(), Client()
    as_staff.force_login(staff)
    as_approver.force_login(approver)

    assert as_staff.get("/admin/approvals/approval/").status_code == 403
    assert as_staff.post(f"/admin/approvals/approval/{waiting.id}/change/", {"decision": "approve"}).status_code in (
        302, 403)
    assert Approval.objects.get(id=waiting.id).status == "pending"
    listing = as_approver.get("/admin/approvals/approval/")
    assert listing.status_code == 200 and b"gated" in listing.content


def test_bulk_approve_from_the_admin(user: Any, approver: Any) -> None:
    plans = [gated_plan(user, approval=True) for _ in range(2)]
    for plan in plans:
        finish(step(plan, "a"))
    ids = [str(waiting_approval(plan).id) for plan in plans]
    admin = Client()
    admin.force_login(approver)

    response = admin.post("/admin/approvals/approval/", {"action": "approve_selected", "_selected_action": ids})

    assert response.status_code == 302
    assert set(Approval.objects.filter(id__in=ids).values_list("status", flat=True)) == {"approved"}


@pytest.mark.e2e
@pytest.mark.usefixtures("idle_worker")
def test_a_person_edits_and_approves_in_the_admin_and_the_plan_finishes(asgi_server: str, page: Any,
                                                                        user: Any, django_user_model: Any) -> None:
    approver = make_approver(django_user_model, "reviewer")
    approver.set_password("reviewer-password")
    approver.save()
    plan = services.plan_create(owner=user, request="browser approval", steps=[
        {"key": "draft", "agent": "remote", "approval": True, "input": {"prompt": "first draft"}},
        {"key": "publish", "agent": "remote", "depends_on": ["draft"]}])

    page.goto(f"{asgi_server}/admin/login/?next=/admin/approvals/approval/")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "reviewer-password")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/approvals/approval/")
    page.click("text=draft")
    page.fill("#id_edited_input", '{"prompt": "edited in the browser"}')
    page.fill("#id_comment", "clearer wording")
    page.screenshot(path=str(ARTIFACTS / "admin-approval.png"))
    page.click("#approve-button")
    page.wait_for_url("**/admin/approvals/approval/")

    plan = wait_for_plan(plan.id)
    assert plan.status == "succeeded"
    assert Step.objects.get(plan=plan, key="draft").output["input"] == {"prompt": "edited in the browser"}
    assert Approval.objects.get(plan_id=plan.id).decided_by == approver


def test_the_approvals_list_takes_the_same_queries_for_one_or_many(user: Any, django_assert_max_num_queries: Any,
                                                                  django_user_model: Any) -> None:
    from approvals import api as approvals_api

    approver = make_approver(django_user_model, "lister")
    for _ in range(5):
        services.plan_create(owner=user, request="x", steps=[{"key": "g", "agent": "held", "approval": True}])
    with django_assert_max_num_queries(4):  # permissions (2), the approvals with their vote counts
        listed = approvals_api.approvals_visible(user=approver)
    assert len(listed) == 5
