"""The people's pages in a real headless Chromium (issue 15), against the real uvicorn server and worker:
a 50-step fan-out / fan-in plan whose drawing is checked geometrically, the whole event history of a
finished plan, approving from the live page, the plan list's filters and the home page. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from approvals.models import Approval
from orchestrator import services
from orchestrator.models import Plan, PlanEvent
from tests.conftest import ARTIFACTS, browser_login, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

Box = tuple[float, float, float, float]  # x, y, width, height


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _fifty_steps() -> list[dict[str, Any]]:
    """start -> 12 fetches -> 12 summaries (one each) -> 12 pair comparisons (two fetches each, skipping the
    summaries' layer) -> 8 groups (fan-in of summaries and comparisons) -> 4 reviews -> report, which also
    depends on start directly (an edge across every layer): 50 steps."""
    steps: list[dict[str, Any]] = [{"key": "start", "agent": "echo"}]
    steps += [{"key": f"fetch_{i}", "agent": "echo", "depends_on": ["start"]} for i in range(12)]
    steps += [{"key": f"summary_{i}", "agent": "echo", "depends_on": [f"fetch_{i}"]} for i in range(12)]
    steps += [{"key": f"compare_{i}", "agent": "echo", "depends_on": [f"fetch_{i}", f"fetch_{(i + 5) % 12}"]}
              for i in range(12)]
    steps += [{"key": f"group_{g}", "agent": "echo",
               "depends_on": [f"summary_{i}" for i in range(12) if i % 8 == g] + [f"compare_{(g * 3) % 12}"]}
              for g in range(8)]
    steps += [{"key": f"review_{r}", "agent": "echo", "depends_on": [f"group_{g}" for g in range(8) if g % 4 == r]}
              for r in range(4)]
    steps.append({"key": "report", "agent": "echo", "depends_on": [f"review_{r}" for r in range(4)] + ["start"]})
    assert len(steps) == 50
    return steps


def _crosses(points: list[tuple[float, float]], box: Box) -> bool:
    """Whether the polyline enters the inside of ``box`` (Liang-Barsky clipping, per segment)."""
    x0, y0, w, h = box
    for (ax, ay), (bx, by) in zip(points, points[1:], strict=False):
        dx, dy = bx - ax, by - ay
        low, high = 0.0, 1.0
        inside = True
        for p, q in ((-dx, ax - x0), (dx, x0 + w - ax), (-dy, ay - y0), (dy, y0 + h - ay)):
            if p == 0:
                if q < 0:
                    inside = False
                    break
            else:
                t = q / p
                if p < 0:
                    low = max(low, t)
                else:
                    high = min(high, t)
        if inside and low < high:
            return True
    return False


_DRAWING = """() => {
  const nodes = {};
  for (const g of document.querySelectorAll('#dag .node')) {
    const m = g.getAttribute('transform').match(/translate\\(([-\\d.e]+),\\s*([-\\d.e]+)\\)/);
    const r = g.querySelector('rect');
    nodes[g.dataset.step] = [Number(m[1]), Number(m[2]), Number(r.getAttribute('width')),
                             Number(r.getAttribute('height'))];
  }
  const edges = [...document.querySelectorAll('#dag .edge')].map((p) => ({
    from: p.dataset.from, to: p.dataset.to, d: p.getAttribute('d'),
    marker: getComputedStyle(p).markerEnd}));
  return {nodes, edges};
}"""


def test_a_fifty_step_plan_is_drawn_with_no_edge_under_a_node(asgi_server: str, page: Any, user: Any) -> None:
    steps = _fifty_steps()
    plan = services.plan_create(owner=user, request="Fifty steps: fan out, fan in", steps=steps)
    wait_for_plan(plan.id, timeout=90)
    browser_login(page, asgi_server, user)

    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector("body[data-ready='1']")
    drawing = page.evaluate(_DRAWING)

    nodes: dict[str, Box] = {k: tuple(v) for k, v in drawing["nodes"].items()}
    assert len(nodes) == 50
    wanted = {(d, s["key"]) for s in steps for d in s.get("depends_on", [])}
    assert {(e["from"], e["to"]) for e in drawing["edges"]} == wanted and len(drawing["edges"]) == len(wanted)
    ends: dict[str, set[tuple[float, float]]] = {}
    for edge in drawing["edges"]:
        points = [(float(x), float(y)) for x, y in re.findall(r"[ML] ([-\d.]+) ([-\d.]+)", edge["d"])]
        assert len(points) >= 2 and "url(" in edge["marker"], edge  # drawn, with an arrowhead
        for key, box in nodes.items():  # no segment enters any node (its own ones included: it meets their sides)
            shrunk = (box[0] + 0.5, box[1] + 0.5, box[2] - 1, box[3] - 1)
            assert not _crosses(points, shrunk), f"edge {edge['from']} -> {edge['to']} passes under {key}"
        tx, ty, tw, th = nodes[edge["to"]]
        end_x, end_y = points[-1]
        assert abs(end_x - tx) < 0.2 and ty < end_y < ty + th, f"{edge} does not end on {edge['to']}'s side"
        assert points[-2][1] == end_y and points[-2][0] < end_x  # it arrives horizontally, from the left
        sx, sy, sw, sh = nodes[edge["from"]]
        assert abs(points[0][0] - (sx + sw)) < 0.2 and sy < points[0][1] < sy + sh  # it leaves its source
        ends.setdefault(edge["to"], set()).add((end_x, end_y))
    for target, points_in in ends.items():  # fan-in: one port per incoming edge
        assert len(points_in) == sum(1 for e in wanted if e[1] == target), target
    # a layered layout: every edge goes left to right
    assert all(nodes[a][0] + nodes[a][2] < nodes[b][0] for a, b in wanted)
    assert page.get_attribute("#connection", "data-state") == "ended"  # "live" only while it runs
    _shot(page, "plan-50-steps.png")

    page.click("#zoom-in")
    page.click("#zoom-in")
    page.click("#zoom-fit")
    page.click('#dag .node[data-step="report"]')
    _shot(page, "plan-50-steps-whole.png")
    assert "depends on" in page.inner_text("#details")
    page.click(".tabs [data-view='timeline']")
    page.wait_for_selector("#gantt .gantt-row[data-step='report'] .bar")
    assert page.locator("#gantt .gantt-row[data-step]").count() == 50
    _shot(page, "plan-50-steps-timeline.png")


def test_a_finished_plan_opened_later_lists_every_event(asgi_server: str, page: Any, user: Any) -> None:
    plan = services.plan_create(owner=user, request="Done before you look", steps=[
        {"key": "a", "agent": "query_analyst", "input": {"prompt": "# Title\n\n**bold** and <script>x</script>"}},
        {"key": "b", "agent": "echo", "depends_on": ["a"]},
        {"key": "c", "agent": "query_analyst", "depends_on": ["a", "b"],
         "input": {"prompt": "Result with `code` and [/path] <img src=x onerror=alert(1)>"}}])
    wait_for_plan(plan.id, timeout=60)
    stored = list(PlanEvent.objects.filter(plan=plan).order_by("id").values_list("id", flat=True))
    browser_login(page, asgi_server, user)

    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#result:not([hidden])")

    shown = [int(i) for i in page.eval_on_selector_all("#log li", "items => items.map(li => li.dataset.event)")]
    assert sorted(shown) == stored and len(stored) >= 10
    assert page.inner_text("#event-count") == f"({len(stored)})"
    assert page.get_attribute("#connection", "data-state") == "ended"
    assert page.inner_text("#connection") == "finished"
    result = page.inner_text("#result .markdown")
    assert "[offline gpt-4o-mini] c:" in result or "[offline gpt-4o-mini] query_analyst:" in result
    assert page.locator("#result .markdown img, #result .markdown script, #details script").count() == 0
    assert "<img src=x onerror=alert(1)>" in result  # raw HTML from agent text is shown as text
    page.click('#dag .node[data-step="a"]')
    assert page.locator("#details .markdown").count() == 1
    _shot(page, "plan-finished-events.png")


def test_an_approver_approves_an_edited_input_from_the_live_page(asgi_server: str, page: Any, user: Any,
                                                                 django_user_model: Any) -> None:
    # an approver: staff who may view every plan and decide approvals
    approver = django_user_model.objects.create_user(username=f"a{uuid.uuid4().hex[:6]}", password="pw",
                                                     is_staff=True)
    approver.user_permissions.add(Permission.objects.get(codename="decide_approval"),
                                  Permission.objects.get(codename="view_plan"))
    plan = services.plan_create(owner=user, request="Needs a yes", steps=[
        {"key": "draft", "agent": "echo", "input": {"text": "first"}},
        {"key": "publish", "agent": "echo", "input": {"text": "original"}, "depends_on": ["draft"],
         "approval": True}])
    wait_for_plan(plan.id, timeout=30, statuses=("running",))

    browser_login(page, asgi_server, user)  # the owner: sees the card, no buttons
    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector('#approvals .approval[data-step="publish"][data-loaded="1"]')
    assert page.locator("#approvals .approval button").count() == 0
    assert "you may not decide" in page.inner_text("#approvals")

    page.context.clear_cookies()
    browser_login(page, asgi_server, approver)
    page.goto(f"{asgi_server}/plans/{plan.id}/")
    page.wait_for_selector('#connection[data-state="live"]')
    card = page.locator('#approvals .approval[data-step="publish"][data-loaded="1"]')
    card.wait_for()
    page.wait_for_selector('#dag .node[data-step="publish"][data-status="waiting"]')
    _shot(page, "plan-approval-waiting.png")
    card.locator("textarea.edited-input").fill('{"text": "edited on the page"}')
    card.locator("input.comment").fill("looks good")
    card.locator("button.approve").click()

    page.wait_for_selector('#plan-status[data-status="succeeded"]', timeout=30_000)
    page.wait_for_selector("#approvals", state="hidden")
    approval = Approval.objects.get(plan_id=plan.id)
    assert (approval.status, approval.decided_by, approval.comment) == ("approved", approver, "looks good")
    assert approval.edited_input == {"text": "edited on the page"}
    assert Plan.objects.get(id=plan.id).steps.get(key="publish").output["input"] == {"text": "edited on the page"}
    assert page.get_attribute("#connection", "data-state") == "ended"
    _shot(page, "plan-approved.png")


def test_the_plan_list_filters(asgi_server: str, page: Any, user: Any, django_user_model: Any) -> None:
    other = django_user_model.objects.create_user(username=f"o{uuid.uuid4().hex[:6]}", password="pw")
    good = services.plan_create(owner=user, request="Alpha report", steps=[{"key": "a", "agent": "echo"}])
    bad = services.plan_create(owner=user, request="Beta failure", steps=[{"key": "a", "agent": "fail"}])
    services.plan_create(owner=other, request="Alpha of someone else", steps=[{"key": "a", "agent": "echo"}])
    wait_for_plan(good.id)
    wait_for_plan(bad.id)
    browser_login(page, asgi_server, user)

    page.goto(f"{asgi_server}/plans/")
    rows = lambda: set(page.eval_on_selector_all("#plans tbody tr", "rs => rs.map(r => r.dataset.plan)"))  # noqa: E731
    assert rows() == {str(good.id), str(bad.id)}  # never another user's plans
    assert page.inner_text(f'#plans tr[data-plan="{bad.id}"] .badge') == "failed"
    _shot(page, "plan-list.png")

    page.select_option("select[name=status]", "failed")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**status=failed**")
    assert rows() == {str(bad.id)}

    page.goto(f"{asgi_server}/plans/?q=alpha")
    assert rows() == {str(good.id)}
    page.goto(f"{asgi_server}/plans/?q=alpha&status=failed")
    assert page.is_visible("#no-plans")
    page.goto(f"{asgi_server}/plans/?period=1h&status=succeeded")
    assert rows() == {str(good.id)}
    page.click(f'#plans tr[data-plan="{good.id}"] a')
    page.wait_for_url(f"**/plans/{good.id}/")


def test_the_home_page_shows_what_runs_and_where_to_go(asgi_server: str, page: Any, user: Any,
                                                      fake_server: FakeServer) -> None:
    gate = uuid.uuid4().hex
    running = services.plan_create(owner=user, request="Still going", steps=[
        {"key": "wait", "agent": "remote", "input": {"gate": gate}}])
    done = services.plan_create(owner=user, request="Already done", steps=[{"key": "a", "agent": "echo"}])
    wait_for_plan(done.id)
    wait_for_plan(running.id, statuses=("running",))
    anonymous = page.goto(f"{asgi_server}/")
    assert anonymous is not None and "/accounts/login/" in page.url
    browser_login(page, asgi_server, user)

    answer = page.goto(f"{asgi_server}/")

    assert answer is not None and answer.status == 200
    assert page.inner_text("#running-count") == "1"
    assert page.locator(f'#running a[href="/plans/{running.id}/"]').count() == 1
    assert page.locator(f'#recent a[href="/plans/{done.id}/"]').count() == 1
    links = page.inner_text("#links")
    for name in ("Plans", "API docs", "Flower"):
        assert name in links
    assert page.locator('#links a[href="/admin/"]').count() == 0  # not staff
    _shot(page, "home.png")
    fake_server.open_gate(gate)
    wait_for_plan(running.id)


def test_an_approver_rejects_from_the_live_page_and_the_plan_fails(asgi_server: str, page: Any, user: Any,
                                                                   django_user_model: Any) -> None:
    approver = django_user_model.objects.create_user(username=f"r{uuid.uuid4().hex[:6]}", password="pw",
                                                     is_staff=True)
    approver.user_permissions.add(Permission.objects.get(codename="decide_approval"),
                                  Permission.objects.get(codename="view_plan"))
    plan = services.plan_create(owner=user, request="Needs a no", steps=[
        {"key": "risky", "agent": "echo", "approval": True},
        {"key": "after", "agent": "echo", "depends_on": ["risky"]}])
    browser_login(page, asgi_server, approver)

    page.goto(f"{asgi_server}/plans/{plan.id}/")
    card = page.locator('#approvals .approval[data-step="risky"][data-loaded="1"]')
    card.wait_for()
    card.locator("input.comment").fill("too risky")
    card.locator("button.reject").click()

    page.wait_for_selector('#plan-status[data-status="failed"]', timeout=30_000)
    page.wait_for_selector('#dag .node[data-step="risky"][data-status="rejected"]')
    page.wait_for_selector('#dag .node[data-step="after"][data-status="cancelled"]')
    page.wait_for_selector("#result:not([hidden])")
    assert "approval.rejected" in page.inner_text("#result")
    assert Approval.objects.get(plan_id=plan.id).status == "rejected"
    _shot(page, "plan-rejected.png")
