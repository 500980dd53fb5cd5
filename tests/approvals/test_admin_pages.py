"""The admin as people use it (issue 15): links to the live page, who started each plan, decide buttons only
for those who may decide, and a decision page with the edit as a diff and the upstream results folded."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals.models import Approval
from orchestrator import services
from tests.approvals.test_approvals import finish, gated_plan, make_approver, step, waiting_approval

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting(owner: Any) -> Approval:
    plan = gated_plan(owner, approval=True)
    finish(step(plan, "a"))
    return waiting_approval(plan)


def _client(person: Any) -> Client:
    client = Client()
    client.force_login(person)
    return client


def _queries(client: Client, url: str) -> tuple[int, bytes]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), response.content


def test_the_queue_shows_who_started_each_plan_in_a_fixed_number_of_queries(user: Any,
                                                                             django_user_model: Any) -> None:
    approver = make_approver(django_user_model, "queue-approver")
    client = _client(approver)
    first = _waiting(user)
    _waiting(user)
    few, content = _queries(client, "/admin/approvals/approval/")
    for _ in range(3):
        _waiting(user)

    many, _ = _queries(client, "/admin/approvals/approval/")

    assert many == few  # no query per row (votes counted, owners joined, in the list's query)
    assert f'<td class="field-started_by">{user.username}</td>'.encode() in content
    assert f'href="/plans/{first.plan_id}/"'.encode() in content
    assert b"1/1" not in content and b"0/1" in content  # votes so far / quorum


def test_the_plan_list_and_page_link_to_the_live_page(user: Any, django_user_model: Any) -> None:
    admin = django_user_model.objects.create_superuser(username="boss", password="pw", email="b@example.com")
    client = _client(admin)
    plans = [services.plan_create(owner=user, request=f"plan {i}", steps=[{"key": "a", "agent": "held"}])
             for i in range(2)]
    few, content = _queries(client, "/admin/orchestrator/plan/")
    for i in range(3):
        services.plan_create(owner=user, request=f"more {i}", steps=[{"key": "a", "agent": "held"}])

    many, _ = _queries(client, "/admin/orchestrator/plan/")
    page = client.get(f"/admin/orchestrator/plan/{plans[0].id}/change/")

    assert many == few
    assert f'href="/plans/{plans[1].id}/" class="live-page"'.encode() in content
    assert f'href="/plans/{plans[0].id}/"'.encode() in page.content and b"View on site" in page.content
    home = client.get("/")  # the admin's "View site" is the home page, no longer a 404
    assert home.status_code == 200 and b"Agent Orchestrator" in home.content


def test_the_decision_page_hides_decide_buttons_from_the_plans_own_approver(django_user_model: Any) -> None:
    owner = make_approver(django_user_model, "owner-approver")
    approval = _waiting(owner)
    Approval.objects.filter(id=approval.id).update(allow_self_approval=False)  # as the shipped policies say

    page = _client(owner).get(f"/admin/approvals/approval/{approval.id}/change/")
    refused = _client(owner).post(f"/admin/approvals/approval/{approval.id}/change/", {"decision": "approve"})

    assert page.status_code == 200
    assert b"approve-button" not in page.content and b'id="decision-form"' not in page.content
    assert b"You started this plan" in page.content
    assert refused.status_code == 200 and Approval.objects.get(id=approval.id).status == "pending"


def test_the_decision_page_shows_an_edit_as_a_diff_and_folds_upstream_results(user: Any,
                                                                            django_user_model: Any) -> None:
    first, second = make_approver(django_user_model, "first"), make_approver(django_user_model, "second")
    approval = _waiting(user)
    Approval.objects.filter(id=approval.id).update(required_approvals=2)  # a quorum of two
    _client(first).post(f"/admin/approvals/approval/{approval.id}/change/", {
        "decision": "approve", "edited_input": '{"prompt": "edited by the first"}', "comment": "tweaked"})

    again = _client(first).get(f"/admin/approvals/approval/{approval.id}/change/")
    page = _client(second).get(f"/admin/approvals/approval/{approval.id}/change/")

    assert Approval.objects.get(id=approval.id).status == "pending"
    assert b"approve-button" not in again.content and b"Your vote is in" in again.content
    content = page.content.decode()
    assert 'id="approve-button"' in content
    assert '<div class="del">  &quot;prompt&quot;: &quot;original&quot;</div>' in content
    assert '<div class="add">  &quot;prompt&quot;: &quot;edited by the first&quot;</div>' in content
    assert '<details class="upstream" open><summary>a</summary>' in content  # a's output, one click away
    assert "&quot;from&quot;: &quot;a&quot;" in content
