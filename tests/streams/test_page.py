"""The live plan page in a real headless Chromium, against the real uvicorn server and worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from orchestrator import services
from tests.conftest import ARTIFACTS, browser_login
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]


def _wait_colour(page: Any, key: str, status: str) -> str:
    """Wait until the step's box is painted in the colour of ``status`` (after its CSS transition); return it."""
    page.wait_for_function("""([key, status]) => {
        const probe = document.createElement("i");
        probe.style.color = `var(--${status})`;
        document.body.append(probe);
        const wanted = getComputedStyle(probe).color;
        probe.remove();
        const rect = document.querySelector(`#dag .node[data-step="${key}"] rect`);
        return rect && getComputedStyle(rect).fill === wanted;
    }""", arg=[key, status])
    return str(page.eval_on_selector(f'#dag .node[data-step="{key}"] rect', "r => getComputedStyle(r).fill"))


def test_the_live_page_changes_colour_as_steps_finish(asgi_server: str, page: Any, user: Any,
                                                      fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    plan = services.plan_create(owner=user, request="Watch me run", steps=[
        {"key": "fetch", "agent": "remote", "input": {"gate": gate}},
        {"key": "parallel", "agent": "remote", "input": {"gate": gate}},
        {"key": "combine", "agent": "echo", "depends_on": ["fetch", "parallel"]}])
    browser_login(page, asgi_server, user)

    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector('#dag .node[data-step="fetch"][data-status="running"]')
    page.wait_for_selector('#connection[data-state="live"]')
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    running = _wait_colour(page, "fetch", "running")
    pending = _wait_colour(page, "combine", "pending")
    assert page.locator("#dag .edge").count() == 2  # combine depends on both

    fake_server.open_gate(gate)
    page.wait_for_selector('#plan-status[data-status="succeeded"]', timeout=30_000)
    page.wait_for_selector('#result:not([hidden])')

    assert page.evaluate("window.sameDocument") is True
    assert {page.get_attribute(f'#dag .node[data-step="{k}"]', "data-status")
            for k in ("fetch", "parallel", "combine")} == {"succeeded"}
    done = _wait_colour(page, "fetch", "succeeded")
    assert running != done != pending
    assert _wait_colour(page, "combine", "succeeded") == done
    page.click('#dag .node[data-step="fetch"]')
    page.wait_for_selector("#details pre.output:has-text('handled')")
    assert "from" in page.inner_text("#result pre")  # the sink's output: echo's {"input", "from"}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "plan-live.png"), full_page=True)


def test_the_live_page_is_for_its_owner_only(asgi_server: str, page: Any, user: Any,
                                             django_user_model: Any) -> None:
    plan = services.plan_create(owner=user, request="mine", steps=[{"key": "a", "agent": "held"}])
    stranger = django_user_model.objects.create_user(username=f"s{uuid.uuid4().hex[:6]}", password="pw")

    anonymous = page.goto(f"{asgi_server}/plans/{plan.id}/")
    assert anonymous is not None and "/accounts/login/" in page.url
    browser_login(page, asgi_server, stranger)
    answer = page.goto(f"{asgi_server}/plans/{plan.id}/")
    assert answer is not None and answer.status == 404
