"""The live plan page shows steps that appear while the plan runs (issue 10): one an agent spawned, one a person
added through the API; in a real headless Chromium against the real uvicorn server and worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from orchestrator import services
from tests.conftest import ARTIFACTS, api_client, browser_login
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def test_spawned_and_added_steps_appear_on_the_live_page(asgi_server: str, page: Any, user: Any,
                                                         fake_server: FakeServer) -> None:
    first, later = uuid.uuid4().hex, uuid.uuid4().hex
    spawn = [{"key": "spawned", "agent": "remote", "input": {"gate": later}}]
    plan = services.plan_create(owner=user, request="Grow while I watch", steps=[
        {"key": "hold", "agent": "remote", "input": {"gate": first}},
        {"key": "boss", "agent": "emit", "input": {"output": {"spawn": spawn}}, "depends_on": ["hold"]},
        {"key": "after", "agent": "echo", "depends_on": ["boss"]}])
    browser_login(page, asgi_server, user)
    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector('#dag .node[data-step="hold"][data-status="running"]')
    page.wait_for_selector('#connection[data-state="live"]')
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    assert page.locator("#dag .node").count() == 3

    added = api_client(user).post(f"/api/plans/{plan.id}/steps/", {"steps": [
        {"key": "added", "agent": "remote", "input": {"gate": later}, "depends_on": ["hold"]}]}, format="json")
    assert added.status_code == 200, added.json()
    page.wait_for_selector('#dag .node[data-step="added"][data-status="pending"]')
    fake_server.open_gate(first)

    page.wait_for_selector('#dag .node[data-step="spawned"][data-status="running"]', timeout=30_000)
    page.wait_for_selector('#dag .node[data-step="added"][data-status="running"]')
    assert page.locator("#dag .node").count() == 5
    assert page.locator('#dag .edge[data-from="spawned"][data-to="after"]').count() == 1  # the join
    assert page.locator('#log li[data-type="step.added"]').count() == 1
    assert page.locator('#log li[data-type="plan.grown"]').count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "plan-live-grown.png"), full_page=True)

    fake_server.open_gate(later)
    page.wait_for_selector('#plan-status[data-status="succeeded"]', timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    assert {page.get_attribute(f'#dag .node[data-step="{k}"]', "data-status")
            for k in ("hold", "boss", "spawned", "added", "after")} == {"succeeded"}
