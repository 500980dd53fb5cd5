"""The audit trail: API writes and human decisions recorded with who, what, when and from where; kept when
its plan is deleted; refused edits at the database; readable by staff allowed to view it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, transaction

from audit.admin import AuditEntryAdmin
from audit.models import AuditEntry
from orchestrator.models import Plan
from tests.conftest import api_client

pytestmark = pytest.mark.django_db

BODY = {"request": "x", "steps": [{"key": "a", "agent": "held"}]}


def test_an_api_write_is_recorded_with_who_what_and_from_where(user: Any) -> None:
    api = api_client(user)
    plan_id = api.post("/api/plans/", BODY, REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="integrator/1.0").json()["id"]

    api.post(f"/api/plans/{plan_id}/cancel/", REMOTE_ADDR="203.0.113.9")

    created, cancelled = AuditEntry.objects.filter(action__startswith="api.").order_by("id")
    assert (created.action, created.actor_name, created.target, created.status_code, created.ip,
            created.user_agent) == ("api.post", user.username, "/api/plans/", 201, "203.0.113.9", "integrator/1.0")
    assert (cancelled.target, str(cancelled.plan_id), cancelled.actor_id) == (
        f"/api/plans/{plan_id}/cancel/", plan_id, user.pk)
    assert created.at <= cancelled.at


def test_reads_are_not_recorded(user: Any) -> None:
    api_client(user).get("/api/plans/")

    assert not AuditEntry.objects.exists()


def test_a_human_decision_from_the_plans_events_is_recorded(user: Any) -> None:
    from orchestrator import services

    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "held"}])
    services.plan_cancel(plan_id=plan.id, actor=user)  # its entry is written with its event, before commit

    entry = AuditEntry.objects.get(action="plan.cancelled")
    assert (entry.plan_id, entry.actor_name) == (plan.id, user.username)


def test_the_trail_survives_deleting_its_plan_and_refuses_edits(user: Any) -> None:
    api = api_client(user)
    plan_id = api.post("/api/plans/", BODY).json()["id"]
    api.post(f"/api/plans/{plan_id}/cancel/")

    Plan.objects.filter(id=plan_id).delete()

    entry = AuditEntry.objects.filter(plan_id=plan_id, action="api.post").get()
    assert AuditEntry.objects.filter(plan_id=plan_id, action="plan.cancelled").exists()  # from its events
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(id=entry.id).update(action="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(id=entry.id).delete()
    assert AuditEntry.objects.get(id=entry.id).action == "api.post"
    admin = AuditEntryAdmin(AuditEntry, None)  # type: ignore[arg-type]
    assert not admin.has_change_permission(None) and not admin.has_delete_permission(None)  # type: ignore[arg-type]


def test_staff_allowed_to_view_the_trail_read_it_through_the_api(user: Any, django_user_model: Any) -> None:
    api = api_client(user)
    api.post("/api/plans/", BODY)
    auditor = django_user_model.objects.create_user(username="auditor", password="pw-for-tests", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_auditentry"))

    denied = api.get("/api/audit/")
    entries = api_client(auditor).get(f"/api/audit/?actor={user.username}").json()["results"]

    assert denied.status_code == 403
    assert [(e["action"], e["target"]) for e in entries] == [("api.post", "/api/plans/")]
