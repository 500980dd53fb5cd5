"""Organisations (issue 11): organisation B gets a 404 on every object of organisation A (plans, their actions
and streams, approvals in the API, the admin and MCP, memory, the audit trail); members of one organisation
read each other's plans, and only the owner or an organisation admin changes one."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from mcp import Client as McpClient
from rest_framework.authtoken.models import Token

from approvals.models import Approval
from audit.models import AuditEntry
from orchestrator import services
from orchestrator.mcp_server import build_server
from orchestrator.models import Plan
from organisations import services as organisations
from organisations.api import tenancy_of
from organisations.models import Role
from tests.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)

# A root step that waits for a person: the plan runs, an approval is pending, and nothing is sent to a worker.
GATED = [{"key": "g", "agent": "held", "approval": True, "input": {"prompt": "A's secret"}}]


@dataclass
class Tenants:
    alice: Any  # member of A, owns the plan
    ann: Any  # member of A
    admin_a: Any  # admin of A
    approver_a: Any  # staff of A with the decide permission
    bob: Any  # member of B
    approver_b: Any  # staff of B with the decide and view-plan permissions


def _person(model: Any, organisation: Any, role: str = Role.MEMBER, *perms: str) -> Any:
    person = model.objects.create_user(username=f"p{uuid.uuid4().hex[:8]}", password="pw-for-tests",
                                       is_staff=bool(perms))
    person.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    organisations.member_set(user=person, organisation=organisation, role=role)
    return model.objects.get(pk=person.pk)  # fresh: permissions and tenancy are cached per instance


@pytest.fixture
def tenants(django_user_model: Any) -> Tenants:
    a = organisations.organisation_create(name="A", slug=f"a-{uuid.uuid4().hex[:6]}")
    b = organisations.organisation_create(name="B", slug=f"b-{uuid.uuid4().hex[:6]}")
    return Tenants(alice=_person(django_user_model, a), ann=_person(django_user_model, a),
                   admin_a=_person(django_user_model, a, Role.ADMIN),
                   approver_a=_person(django_user_model, a, Role.MEMBER, "decide_approval"),
                   bob=_person(django_user_model, b),
                   approver_b=_person(django_user_model, b, Role.MEMBER, "decide_approval", "view_plan"))


def _gated_plan(owner: Any) -> tuple[Plan, Approval]:
    plan = services.plan_create(owner=owner, request="A's confidential plan", steps=GATED)
    return plan, Approval.objects.get(plan_id=plan.id)


def test_organisation_b_gets_404_on_organisation_as_plans_and_approvals_over_rest(tenants: Tenants) -> None:
    plan, approval = _gated_plan(tenants.alice)
    assert plan.organisation_id == approval.organisation_id == tenancy_of(tenants.alice).organisation_id

    for person in (tenants.bob, tenants.approver_b):
        api = api_client(person)
        assert api.get("/api/plans/").json()["results"] == []
        assert api.get("/api/approvals/").json() == []
        assert api.get("/api/approvals/?status=pending").json() == []
        not_found = [
            api.get(f"/api/plans/{plan.id}/"),
            api.post(f"/api/plans/{plan.id}/cancel/"),
            api.post(f"/api/plans/{plan.id}/retry/"),
            api.get(f"/api/plans/{plan.id}/snapshot/"),
            api.get(f"/api/plans/{plan.id}/history/"),
            api.get(f"/api/approvals/{approval.id}/"),
            api.post(f"/api/approvals/{approval.id}/approve/", {}, format="json"),
            api.post(f"/api/approvals/{approval.id}/reject/", {}, format="json"),
            api.post(f"/workflow/{plan.id}/approve", {"decision": "approve"}, format="json"),
        ]
        assert [(r.status_code, r.json()["error"]["code"].split(".")[-1]) for r in not_found] == [
            (404, "not_found")] * len(not_found), person
        assert "secret" not in str([r.content for r in not_found])

    # nothing changed, and A's own approver still sees and may decide it
    assert Plan.objects.get(id=plan.id).status == "running"
    assert Approval.objects.get(id=approval.id).status == "pending"
    mine = api_client(tenants.approver_a).get("/api/approvals/?status=pending").json()
    assert [a["id"] for a in mine] == [str(approval.id)]


def test_organisation_b_gets_404_on_the_live_page_and_both_streams(asgi_server: str, tenants: Tenants) -> None:
    plan, _ = _gated_plan(tenants.alice)
    bob = {"Authorization": f"Token {Token.objects.create(user=tenants.bob).key}"}
    alice = {"Authorization": f"Token {Token.objects.create(user=tenants.alice).key}"}

    for path in (f"/api/plans/{plan.id}/events/", f"/workflow/{plan.id}/stream"):
        answer = httpx.get(f"{asgi_server}{path}", headers=bob, timeout=10)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found"), path
        with httpx.stream("GET", f"{asgi_server}{path}", headers=alice, timeout=10) as own:
            assert own.status_code == 200, path  # the same stream opens for its owner
    page = Client()
    page.force_login(tenants.bob)
    assert page.get(f"/plans/{plan.id}/").status_code == 404
    assert str(plan.id) not in page.get("/plans/").content.decode()
    page.force_login(tenants.alice)
    assert page.get(f"/plans/{plan.id}/").status_code == 200


def test_the_admin_approval_queue_and_plan_list_hold_the_approvers_organisation_only(tenants: Tenants) -> None:
    plan, approval = _gated_plan(tenants.alice)
    theirs = Client()
    theirs.force_login(tenants.approver_b)
    ours = Client()
    ours.force_login(tenants.approver_a)

    assert str(approval.id) not in theirs.get("/admin/approvals/approval/").content.decode()
    assert str(approval.id) in ours.get("/admin/approvals/approval/").content.decode()
    page = theirs.get(f"/admin/approvals/approval/{approval.id}/change/")
    assert page.status_code == 302 and "secret" not in page.content.decode()  # as for a missing approval
    decided = theirs.post(f"/admin/approvals/approval/{approval.id}/change/", {"decision": "approve"})
    assert decided.status_code == 302
    bulk = theirs.post("/admin/approvals/approval/", {"action": "approve_selected",
                                                      "_selected_action": [str(approval.id)]})
    assert bulk.status_code in (200, 302)
    assert Approval.objects.get(id=approval.id).status == "pending"  # B's approver decided nothing
    # staff of B with view_plan: not A's plan in the admin, nor through the API
    assert theirs.get(f"/admin/orchestrator/plan/{plan.id}/change/").status_code == 302
    assert api_client(tenants.approver_b).get(f"/api/plans/{plan.id}/").status_code == 404


def _mcp(user: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def session() -> list[Any]:
        async with McpClient(build_server(stdio_user=user)) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, session).result()


def test_organisation_b_gets_not_found_on_organisation_as_objects_over_mcp(tenants: Tenants) -> None:
    plan, approval = _gated_plan(tenants.alice)

    read, pending, decided = _mcp(tenants.approver_b, [
        ("plan_get", {"plan_id": str(plan.id)}), ("approvals_pending", {}),
        ("approval_decide", {"approval_id": str(approval.id), "decision": "approve"})])
    own_pending, = _mcp(tenants.approver_a, [("approvals_pending", {})])

    assert read.is_error and "not_found" in read.content[0].text
    assert pending.structured_content["result"] == []
    assert decided.is_error and "not_found" in decided.content[0].text
    assert [a["id"] for a in own_pending.structured_content["result"]] == [str(approval.id)]
    assert Approval.objects.get(id=approval.id).status == "pending"


def test_organisation_b_gets_404_on_organisation_as_memory(tenants: Tenants) -> None:
    owner = api_client(tenants.alice)
    created = owner.post("/api/memory/", {"text": "A keeps the quokka codes in Zanzibar."}, format="json")
    memory_id = created.json()["id"]
    api = api_client(tenants.bob)

    assert api.get(f"/api/memory/{memory_id}/").status_code == 404
    assert api.delete(f"/api/memory/{memory_id}/").status_code == 404
    assert api.get("/api/memory/").json()["results"] == []
    assert "quokka" not in api.post("/api/memory/search/", {"query": "quokka codes"}, format="json").content.decode()
    assert owner.get(f"/api/memory/{memory_id}/").status_code == 200


def test_organisation_admins_read_their_own_organisations_audit_trail_only(tenants: Tenants,
                                                                           django_user_model: Any) -> None:
    alice = api_client(tenants.alice)
    alice.post("/api/plans/", {"request": "audited", "steps": GATED}, format="json")
    api_client(tenants.bob).post("/api/plans/", {"request": "audited in B", "steps": GATED}, format="json")
    plan_a = Plan.objects.get(owner=tenants.alice)
    alice.post(f"/api/plans/{plan_a.id}/cancel/")  # an API write, and a human decision from the plan's events
    admin_a = api_client(tenants.admin_a)
    admin_b = api_client(_person(django_user_model, Plan.objects.get(owner=tenants.bob).organisation, Role.ADMIN))

    seen_by_a = admin_a.get("/api/audit/")
    seen_by_b = admin_b.get("/api/audit/").json()["results"]

    assert seen_by_a.status_code == 200
    actors = {e["actor_name"] for e in seen_by_a.json()["results"]}
    assert tenants.alice.username in actors and tenants.bob.username not in actors
    assert {("api.post", str(plan_a.id)), ("plan.cancelled", str(plan_a.id))} <= {
        (e["action"], e["plan_id"]) for e in seen_by_a.json()["results"]}  # its plans' events too
    assert {e["actor_name"] for e in seen_by_b} - {""} == {tenants.bob.username}
    assert all(e["plan_id"] != str(plan_a.id) for e in seen_by_b)
    assert admin_a.get(f"/api/audit/?plan={plan_a.id}").json()["results"]
    assert admin_b.get(f"/api/audit/?plan={plan_a.id}").json()["results"] == []
    assert api_client(tenants.ann).get("/api/audit/").status_code == 403  # a member is not an admin
    assert AuditEntry.objects.filter(plan_id=plan_a.id).exists()


def test_members_read_each_others_plans_and_only_the_owner_or_an_admin_changes_one(tenants: Tenants) -> None:
    plan, _ = _gated_plan(tenants.alice)
    colleague = api_client(tenants.ann)

    assert colleague.get(f"/api/plans/{plan.id}/").status_code == 200
    assert [p["id"] for p in colleague.get("/api/plans/").json()["results"]] == [str(plan.id)]
    refused = colleague.post(f"/api/plans/{plan.id}/cancel/")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "plan.forbidden")
    assert colleague.post(f"/api/plans/{plan.id}/retry/").status_code == 403
    assert Plan.objects.get(id=plan.id).status == "running"

    cancelled = api_client(tenants.admin_a).post(f"/api/plans/{plan.id}/cancel/")

    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")


def test_in_the_default_organisation_users_stay_isolated_from_each_other(django_user_model: Any) -> None:
    first = django_user_model.objects.create_user(username=f"d{uuid.uuid4().hex[:6]}")
    second = django_user_model.objects.create_user(username=f"d{uuid.uuid4().hex[:6]}")
    plan, _ = _gated_plan(first)

    assert tenancy_of(first).organisation == tenancy_of(second).organisation == "default"
    assert not tenancy_of(first).shared_plans
    api = api_client(second)
    assert api.get(f"/api/plans/{plan.id}/").status_code == 404
    assert api.get("/api/plans/").json()["results"] == []


def test_an_organisations_approval_policy_gates_its_own_plans_only(tenants: Tenants) -> None:
    from approvals import api as approvals
    from approvals.models import ApprovalPolicy

    team = tenancy_of(tenants.alice).organisation_id
    ApprovalPolicy.objects.create(name="a-reviews-held", agent="held", organisation_id=team)
    ApprovalPolicy.objects.create(name="everyone-reviews-sql", agent="sql")

    plan = services.plan_create(owner=tenants.alice, request="A's plan", steps=[{"key": "s", "agent": "held"}])

    assert Approval.objects.get(plan_id=plan.id).policy == "a-reviews-held"
    other = tenancy_of(tenants.bob).organisation_id
    assert {p.name for p in approvals.policies(organisation_id=other)} >= {"everyone-reviews-sql"}
    assert "a-reviews-held" not in {p.name for p in approvals.policies(organisation_id=other)}
