"""The guide's endpoints as written, end to end on a real uvicorn process and a real worker:
``POST /orchestrate`` in sync and streaming modes, ``/workflow/{id}/stream`` with the guide's event names,
and the per-user limit on open streams."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from orchestrator.models import Plan
from tests.conftest import wait_for_plan
from tests.fakes import FakeServer
from tests.streams.sse import SseClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

GUIDE_NAMES = {"agent_started", "agent_update", "agent_completed", "progress", "approval_required", "complete"}


def _auth(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def test_sync_mode_waits_and_answers_with_the_result(asgi_server: str, user: Any) -> None:
    body = {"request": "sync please", "mode": "sync", "timeout": 30,
            "steps": [{"key": "a", "agent": "echo", "input": {"text": "hello"}}]}

    response = httpx.post(f"{asgi_server}/orchestrate", json=body, headers=_auth(user), timeout=40)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "succeeded"
    stored = Plan.objects.get(id=answer["session_id"]).result
    assert stored is not None and answer["result"] == stored


def test_sync_mode_answers_202_with_the_urls_when_the_plan_outlasts_the_timeout(
        asgi_server: str, user: Any, fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    body = {"request": "slow", "mode": "sync", "timeout": 0.5,
            "steps": [{"key": "a", "agent": "remote", "input": {"gate": gate}}]}
    try:
        response = httpx.post(f"{asgi_server}/orchestrate", json=body, headers=_auth(user), timeout=20)
    finally:
        fake_server.open_gate(gate)

    assert response.status_code == 202
    answer = response.json()
    assert answer["plan_url"] == f"/api/plans/{answer['session_id']}/"
    assert answer["stream_url"] == f"/workflow/{answer['session_id']}/stream"
    wait_for_plan(uuid.UUID(answer["session_id"]))


def test_a_sync_wait_does_not_block_other_requests(asgi_server: str, user: Any, fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    body = {"request": "slow", "mode": "sync", "timeout": 3,
            "steps": [{"key": "a", "agent": "remote", "input": {"gate": gate}}]}
    with httpx.Client(timeout=20) as client:
        import threading

        waited: list[int] = []
        waiter = threading.Thread(target=lambda: waited.append(
            client.post(f"{asgi_server}/orchestrate", json=body, headers=_auth(user)).status_code))
        waiter.start()
        try:
            other = httpx.get(f"{asgi_server}/api/plans/", headers=_auth(user), timeout=20)
            still_waiting = waiter.is_alive()
        finally:
            waiter.join(timeout=20)
            fake_server.open_gate(gate)

    assert other.status_code == 200
    assert still_waiting and waited == [202]


def test_streaming_mode_answers_with_the_stream_in_the_guides_names(asgi_server: str, user: Any) -> None:
    body = {"request": "stream it", "mode": "streaming",
            "steps": [{"key": "a", "agent": "echo"}, {"key": "b", "agent": "echo", "depends_on": ["a"]}]}
    stream = SseClient(f"{asgi_server}/orchestrate", headers=_auth(user), method="POST", json_body=body)
    try:
        assert (stream.status, stream.content_type) == (200, "text/event-stream")
        events = stream.plan_events(until="complete")
    finally:
        stream.close()

    assert {e.type for e in events} <= GUIDE_NAMES
    by_type = [(e.type, e.json["type"], e.json["step_key"]) for e in events]
    assert ("agent_started", "step.started", "a") in by_type
    assert ("agent_completed", "step.succeeded", "b") in by_type
    assert by_type[-1] == ("complete", "plan.completed", "")
    assert by_type[0][1] == "plan.created"  # from the plan's first event


def test_the_workflow_stream_speaks_the_guides_names_and_the_api_stream_the_projects(
        asgi_server: str, user: Any) -> None:
    from orchestrator import services

    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "echo"}])
    wait_for_plan(plan.id)

    guide = SseClient(f"{asgi_server}/workflow/{plan.id}/stream?lastEventId=0", headers=_auth(user))
    ours = SseClient(f"{asgi_server}/api/plans/{plan.id}/events/?lastEventId=0", headers=_auth(user))
    try:
        guide_events = guide.plan_events(until="complete")
        our_events = ours.plan_events(until="plan.completed")
    finally:
        guide.close()
        ours.close()

    assert [e.json for e in guide_events] == [e.json for e in our_events]  # the same events, renamed
    assert [e.type for e in guide_events] == [
        {"step.started": "agent_started", "step.succeeded": "agent_completed",
         "plan.completed": "complete"}.get(e.type, "progress") for e in our_events]


class _Held:
    """An open stream, read by nobody: closing it from this thread closes its socket at once (a reader thread
    blocked in recv would keep the socket open until the next keep-alive)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self.response = self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
        self.status = self.response.status_code

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_a_user_may_hold_only_so_many_streams_open(asgi_server: str, user: Any, settings: Any) -> None:
    from orchestrator import services

    plan = services.plan_create(owner=user, request="x", steps=[{"key": "a", "agent": "echo"}])
    wait_for_plan(plan.id)
    url = f"{asgi_server}/api/plans/{plan.id}/events/"
    opened = [_Held(url, _auth(user)) for _ in range(settings.STREAMS_PER_USER)]
    try:
        assert {s.status for s in opened} == {200}
        refused = httpx.get(url, headers=_auth(user), timeout=10)
        opened.pop().close()
        again = _open_when_freed(url, _auth(user))
    finally:
        for stream in opened:
            stream.close()

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "stream.too_many" and refused.headers["Retry-After"]
    assert again == 200


def _open_when_freed(url: str, headers: dict[str, str]) -> int:
    """A closed stream frees its slot when the server notices the disconnect: retry for a few seconds."""
    import time

    deadline = time.monotonic() + 10
    while True:
        stream = _Held(url, headers)
        stream.close()
        if stream.status != 429 or time.monotonic() > deadline:
            return stream.status
        time.sleep(0.1)
