"""GET /api/plans/{id}/history/ (the events a late page lists) and the links every plan response carries."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import services
from orchestrator.models import PlanEvent
from streams import views
from tests.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_history_pages_through_every_event_in_order(user: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(views, "HISTORY_PAGE", 3)
    plan = services.plan_create(owner=user, request="history", steps=[
        {"key": f"s{i}", "agent": "held"} for i in range(4)])
    stored = list(PlanEvent.objects.filter(plan=plan).order_by("id").values_list("id", "type"))
    client = api_client(user)

    seen, after, pages = [], 0, 0
    while after is not None:
        body = client.get(f"/api/plans/{plan.id}/history/?after={after}").json()
        seen += [(e["id"], e["type"]) for e in body["events"]]
        after, pages = body["next_after"], pages + 1

    assert seen == stored and len(stored) > 3 and pages == -(-len(stored) // 3)


def test_the_history_refuses_a_bad_cursor_and_hides_other_peoples_plans(user: Any, django_user_model: Any) -> None:
    plan = services.plan_create(owner=user, request="mine", steps=[{"key": "a", "agent": "held"}])
    stranger = django_user_model.objects.create_user(username="stranger", password="pw")

    bad = api_client(user).get(f"/api/plans/{plan.id}/history/?after=x1")
    hidden = api_client(stranger).get(f"/api/plans/{plan.id}/history/")

    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "stream.bad_after")
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "not_found")


def test_plan_responses_link_to_the_page_and_the_event_stream(user: Any) -> None:
    client = api_client(user)

    created = client.post("/api/plans/", {"request": "links", "steps": [{"key": "a", "agent": "held"}]},
                          format="json").json()
    listed = client.get("/api/plans/").json()["results"][0]

    for body in (created, listed):
        assert body["page_url"] == f"/plans/{created['id']}/"
        assert body["events_url"] == f"/api/plans/{created['id']}/events/"
    assert client.get(created["events_url"] + "?lastEventId=x").status_code == 400  # it is the stream's URL
