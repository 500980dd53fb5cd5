"""The live stream end to end: a real Celery worker records events, a real uvicorn process streams them over
SSE (django-eventstream, Redis pub/sub) to a real HTTP client."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from config import services as embedded
from orchestrator import services
from orchestrator.models import PlanEvent, Step
from orchestrator.states import PlanStatus
from tests.conftest import ARTIFACTS, wait_for_plan
from tests.fakes import FakeServer
from tests.streams.sse import SseClient, SseEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def _auth(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _stored(plan_id: uuid.UUID, after: int = 0) -> list[tuple[int, str, str]]:
    return list(PlanEvent.objects.filter(plan_id=plan_id, id__gt=after).order_by("id")
                .values_list("id", "type", "step_key"))


def _seen(events: list[SseEvent]) -> list[tuple[int, str, str]]:
    return [(e.json["id"], e.json["type"], e.json["step_key"]) for e in events]


def _wait_step(plan_id: uuid.UUID, key: str, status: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while Step.objects.get(plan_id=plan_id, key=key).status != status:
        assert time.monotonic() < deadline, f"step {key} never became {status}"
        time.sleep(0.05)


def test_events_from_a_worker_reach_an_sse_client(asgi_server: str, user: Any, fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    plan = services.plan_create(owner=user, request="stream me", steps=[
        {"key": "a", "agent": "remote", "input": {"gate": gate}},
        {"key": "b", "agent": "echo", "depends_on": ["a"]}])
    stream = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId=0", headers=_auth(user))
    try:
        assert (stream.status, stream.content_type) == (200, "text/event-stream")
        before = stream.plan_events(until="step.started")  # a's claim, read from storage on connect

        fake_server.open_gate(gate)  # from here on every event happens while the client is connected
        after = stream.plan_events(until="plan.completed")
    finally:
        stream.close()

    assert _seen(before + after) == _stored(plan.id)
    first = after[0].json
    assert (first["type"], first["step_key"], first["plan_id"], first["alias"]) == (
        "step.succeeded", "a", str(plan.id), "agent_update")
    assert first["time"].startswith(str(plan.created_at.year))
    assert after[0].id == f"plan-{plan.id}:{first['id']}"  # the SSE id a browser sends back on reconnect
    assert after[-1].json["alias"] == "complete"
    assert [e.json["alias"] for e in after if e.type == "step.started"] == ["agent_started"]


def test_resume_with_last_event_id_gets_exactly_the_missed_events(asgi_server: str, user: Any,
                                                                  fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    plan = services.plan_create(owner=user, request="resume me", steps=[
        {"key": "a", "agent": "remote", "input": {"gate": gate}},
        {"key": "b", "agent": "echo", "depends_on": ["a"]},
        {"key": "c", "agent": "echo", "depends_on": ["b"]}])
    first = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId=0", headers=_auth(user))
    try:
        seen = first.plan_events(until="step.started")
    finally:
        first.close()  # the client goes away ...
    last_id = seen[-1].id
    assert last_id is not None

    fake_server.open_gate(gate)  # ... and the plan moves on without it
    assert wait_for_plan(plan.id).status == PlanStatus.SUCCEEDED
    missed = _stored(plan.id, after=seen[-1].json["id"])
    assert len(missed) >= 8

    resumed = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/", headers={**_auth(user), "Last-Event-ID": last_id})
    try:
        got = resumed.plan_events(until="plan.completed")
    finally:
        resumed.close()
    assert _seen(got) == missed

    # a bare event id (a snapshot's last_event_id) works as ?lastEventId= too
    cursor = missed[-3][0]
    again = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId={cursor}", headers=_auth(user))
    try:
        assert _seen(again.plan_events(until="plan.completed")) == missed[-2:]
    finally:
        again.close()


def test_only_the_owner_and_staff_may_subscribe(asgi_server: str, user: Any, django_user_model: Any) -> None:
    plan = services.plan_create(owner=user, request="private", steps=[{"key": "a", "agent": "held"}])
    stranger = django_user_model.objects.create_user(username=f"s{uuid.uuid4().hex[:6]}", password="pw")
    staff = django_user_model.objects.create_user(username=f"t{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_plan"))

    for path in (f"/api/plans/{plan.id}/events/", f"/workflow/{plan.id}/stream"):
        answer = httpx.get(f"{asgi_server}{path}", headers=_auth(stranger), timeout=10)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"
        assert str(plan.id) in answer.json()["error"]["message"]  # the id they asked for, nothing more
        assert httpx.get(f"{asgi_server}{path}", timeout=10).status_code == 401
    assert httpx.get(f"{asgi_server}/api/plans/{uuid.uuid4()}/events/", headers=_auth(user),
                     timeout=10).status_code == 404
    assert httpx.get(f"{asgi_server}/api/plans/{plan.id}/events/", headers={"Authorization": "Token nope"},
                     timeout=10).json()["error"]["code"] == "authentication_failed"
    bad = httpx.get(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId=banana", headers=_auth(user), timeout=10)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "stream.bad_last_event_id")

    from django.test import Client

    session = Client()
    session.force_login(user)
    allowed = [("owner, token", _auth(user), None), ("staff, token", _auth(staff), None),
               ("owner, session", {}, {"sessionid": session.cookies["sessionid"].value})]
    for who, headers, cookies in allowed:
        stream = SseClient(f"{asgi_server}/workflow/{plan.id}/stream?lastEventId=0", headers=headers, cookies=cookies)
        try:
            assert stream.status == 200, who
            assert stream.plan_events(until="progress")[0].json["type"] == "plan.created", who  # guide names
        finally:
            stream.close()


def _subscriber_losses() -> int:
    log = ARTIFACTS / "asgi.log"
    return log.read_text(errors="replace").count("streams.subscriber.lost") if log.exists() else 0


def test_a_redis_restart_during_a_plan_loses_no_event(asgi_server: str, user: Any) -> None:
    plan = services.plan_create(owner=user, request="survive redis", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "echo", "depends_on": ["a"]}])
    a = Step.objects.get(plan=plan, key="a")  # "held": no worker takes it; the test plays its worker
    stream = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId=0", headers=_auth(user))
    try:
        seen = stream.plan_events(until="step.queued")
        services.step_claim(step_id=a.id, attempt=1, worker="test")
        seen += stream.plan_events(until="step.started")  # live delivery works
        port = int((embedded.REDIS_DIR / "port").read_text())
        losses = _subscriber_losses()

        embedded.stop_redis()
        # a ends while Redis is down: its events are stored, their announcement is lost, and so is the
        # message that would run b: the send fails without failing the recording, and marks b unsent for
        # the reconciler (which sends it below, as it would in production).
        assert services.step_succeed(step_id=a.id, attempt=1, output={"done": True}, usage=None) is True
        assert Step.objects.get(plan=plan, key="b").unsent
        deadline = time.monotonic() + 60
        while _subscriber_losses() == losses:  # until redis-py gives up: the library's own task would be dead
            assert time.monotonic() < deadline, "the web process never noticed that Redis went away"
            time.sleep(0.1)
        embedded.start_redis(port)
        assert services.reconcile()["requeued"] >= 1

        seen += stream.plan_events(until="plan.completed", timeout=60)  # from the real worker, after it all
        # What this process committed just after Redis returned was not announced (its publisher pauses after a
        # failure): the web process reads storage again once that pause is over, so it arrives too.
        stored_ids = {event_id for event_id, _, _ in _stored(plan.id)}
        seen += stream.plan_events_with_ids(stored_ids - {e.json["id"] for e in seen}, timeout=30)
    finally:
        stream.close()

    assert wait_for_plan(plan.id).status == PlanStatus.SUCCEEDED
    # Every stored event arrived. Delivery is at-least-once: an announcement delayed by Redis's absence can
    # arrive after the catch-up read that already sent its event, so clients de-duplicate by id.
    assert sorted(set(_seen(seen))) == _stored(plan.id)
