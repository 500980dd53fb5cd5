"""Follow a plan in the terminal: a live table of its steps (or, without a terminal, one line per change),
then a timeline that shows which steps ran side by side, and the result.

It reads the plan's event record, the same source the live stream serves. Text that comes from a plan or
an agent (keys, requests, results, error messages) is escaped before Rich sees it: an agent's
``[offline ...]`` tag or a ``[/path]`` is shown as written, never taken for markup.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.models import Plan, PlanEvent, Step
from orchestrator.selectors import plan_events_after
from orchestrator.states import PLAN_TERMINAL

COLOURS = {"pending": "grey50", "queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red",
           "cancelled": "magenta", "planning": "cyan", "completed": "green", "waiting": "bold bright_magenta",
           "rejected": "red", "required": "bold bright_magenta", "decided": "green"}


@dataclass
class Span:
    key: str
    start: datetime
    end: datetime


def _seconds(plan: Plan, at: datetime | None) -> str:
    return f"{(at - plan.created_at).total_seconds():6.2f}s" if at else "      -"


def _table(plan: Plan, steps: list[Step]) -> Table:
    table = Table(title=f"plan {plan.id}  [{COLOURS.get(plan.status, 'white')}]{plan.status}[/]", expand=False)
    for column in ("step", "agent", "status", "try", "started", "finished"):
        table.add_column(column)
    for step in steps:
        colour = COLOURS.get(step.status, "white")
        table.add_row(escape(step.key), escape(step.agent), f"[{colour}]{step.status}[/]", str(step.attempt),
                      _seconds(plan, step.started_at), _seconds(plan, step.finished_at))
    return table


def _steps(plan: Plan) -> list[Step]:
    return list(Step.objects.filter(plan=plan).order_by("queued_at", "key"))


def approval_help(event: PlanEvent) -> str:
    """Where a person decides a waiting step: the admin page and the API call."""
    site = settings.SITE_URL
    return escape(f"  step {event.step_key!r} waits for approval ({event.data.get('reason', '')}).\n"
                  f"    admin: {site}{event.data.get('admin_url', '')}\n"
                  f"    API:   curl -X POST '{site}{event.data.get('api_url', '')}' -H \"Authorization: Token $TOKEN\"")


def follow(plan_id: uuid.UUID, *, console: Console, poll: float = 0.1, timeout: float | None = None,
           on_event: Callable[[PlanEvent], None] | None = None) -> Plan:
    """Render the plan until it ends (or ``timeout`` seconds pass); return it as it then stands.

    ``on_event`` sees every event as it is read (``--auto-approve`` uses it)."""
    deadline = time.monotonic() + timeout if timeout else None
    plan = Plan.objects.get(id=plan_id)
    last_id = 0
    live = Live(_table(plan, _steps(plan)), console=console, refresh_per_second=10) if console.is_terminal \
        else None
    if live:
        live.start()
    try:
        while True:
            plan.refresh_from_db()
            events = plan_events_after(plan_id=plan.id, after_id=last_id)
            if events:
                last_id = events[-1].id
            if live:
                live.update(_table(plan, _steps(plan)))
            for event in events:
                if not live:
                    offset = (event.created_at - plan.created_at).total_seconds()
                    colour = COLOURS.get(event.type.split(".")[-1], "white")
                    console.print(f"  +{offset:6.2f}s  {escape(f'{event.step_key or "(plan)":<18}')} "
                                  f"[{colour}]{event.type}[/]{escape(_detail(event.data))}", highlight=False)
                if event.type == "approval.required":
                    console.print(approval_help(event), highlight=False)
                if event.type in ("plan.grown", "plan.spawn_refused"):  # issue 10: the plan grew, or not
                    console.print(growth_line(event), highlight=False)
                if event.type in ("plan.edited", "plan.rerun"):  # issue 10: a person changed it
                    console.print(edit_line(event), highlight=False)
                if event.type == "step.context":  # memory: what the step's context recalled and cut
                    console.print(context_line(event, plan.owner_id), highlight=False)
                if on_event is not None:
                    on_event(event)
            if plan.status in PLAN_TERMINAL or (deadline and time.monotonic() > deadline):
                return plan
            time.sleep(poll)
    finally:
        if live:
            live.stop()


def context_line(event: PlanEvent, owner_id: int) -> str:
    """One line of a step's context record; recalled memories are shown by their opening words (read back
    through memory's API, for the plan's owner: the event itself holds no memory content)."""
    from memory import api as memory

    data = event.data
    if data.get("code"):
        return f"  {event.step_key}: memory unavailable ({data['code']})"
    recalled = []
    for item in data.get("recalled", []):
        try:
            text = memory.memory_get(owner=memory.Owner(user_id=owner_id), memory_id=uuid.UUID(item["id"])).text
        except memory.MemoryNotFound:
            text = "(deleted)"
        origin = f"plan {str(item.get('plan_id') or '-')[:8]}"
        recalled.append(f"\n      recalled {item['kind']} of {origin} (similarity {item['similarity']}): "
                        f"{text.splitlines()[0][:90]}")
    reasons = Counter(str(c["reason"]) for c in data.get("cut", []))
    cut = f", cut {sum(reasons.values())} ({', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))})" \
        if reasons else ""
    return (f"  [bold]{event.step_key}[/] context {data.get('tokens')}/{data.get('budget')} tokens, "
            f"{len(recalled)} memories recalled{cut}{''.join(recalled)}")


def growth_line(event: PlanEvent) -> str:
    """What made the plan grow after a step (services/growth.py): the rule that fired, the ``spawn`` its
    output asked for, or its fan-out; and the steps added. Or what was refused, and why."""
    data = event.data
    if event.type == "plan.spawn_refused":
        return escape(f"  what {event.step_key!r} spawned was refused ({data.get('code')}): {data.get('message')}")
    steps = [str(key) for key in data.get("steps", [])]
    shown = ", ".join(steps[:8]) + (f", ... ({len(steps)} steps)" if len(steps) > 8 else "")
    why = {"rule": f"rule {data.get('rule')!r} fired", "spawn": "its output asked for steps",
           "fan_out": f"it fanned out over {len(steps)} items", "replan_request": "it asked the planner for more",
           "replan": "the planner extended the plan"}.get(str(data.get("source")), "it grew")
    return f"  [bold]{escape(event.step_key)}[/]: {escape(why)}, spawned {escape(shown)}"


def edit_line(event: PlanEvent) -> str:
    """Who changed the plan, and how (services/edits.py)."""
    data, who = event.data, escape(str(event.actor or "someone"))
    if event.type == "plan.rerun":
        return f"  {who} re-ran from [bold]{escape(event.step_key)}[/]: {escape(', '.join(data.get('steps', [])))}"
    parts = [f"{what} {', '.join(data[what])}" for what in ("added", "removed", "changed") if data.get(what)]
    return f"  {who} edited the plan (version {data.get('version')}): {escape('; '.join(parts))}"


def _detail(data: dict[str, object]) -> str:
    shown = {k: v for k, v in data.items() if k in ("code", "message", "reason", "attempt") and v}
    return "  " + " ".join(f"{k}={v}" for k, v in shown.items()) if shown else ""


def timeline(plan: Plan, *, console: Console, width: int = 48) -> None:
    """Draw when each step ran, and name the steps that overlapped in time."""
    spans = [Span(s.key, s.started_at, s.finished_at) for s in _steps(plan) if s.started_at and s.finished_at]
    if not spans:
        return
    origin = min(s.start for s in spans)
    total = max((s.end - origin).total_seconds() for s in spans) or 1e-9
    console.print(f"\nTimeline ({total:.2f}s from the first step's start):")
    for span in spans:
        start = (span.start - origin).total_seconds()
        end = (span.end - origin).total_seconds()
        left = round(start / total * width)
        bar = " " * left + "█" * max(1, round(end / total * width) - left)
        console.print(escape(f"  {span.key:<18} |{bar:<{width}}| {start:5.2f}s → {end:5.2f}s"), highlight=False)
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            overlap = (min(a.end, b.end) - max(a.start, b.start)).total_seconds()
            if overlap > 0:
                console.print(escape(f"  ran in parallel: {a.key} and {b.key} (overlapping {overlap:.2f}s)"),
                              highlight=False)


def summary(plan: Plan, *, console: Console) -> None:
    colour = COLOURS.get(plan.status, "white")
    console.print(f"\nPlan {plan.id} [{colour}]{plan.status}[/]", highlight=False)
    if plan.error_code:
        console.print(escape(f"  error {plan.error_code}: {plan.error_message}"), highlight=False)
    if plan.result is not None:
        result = plan.result
        text = result.get("text") if isinstance(result, dict) and "text" in result else json.dumps(result, indent=2)
        console.print("Result:", highlight=False)
        console.print(Text(str(text)), highlight=False)  # verbatim: agent text is never markup
        if isinstance(text, str) and "[offline " in text:
            console.print("Note: these answers are offline (no LLM key is set, so no model was called). "
                          "Set LLM_API_KEY or ANTHROPIC_API_KEY for a real one: see README, Agents.",
                          highlight=False)
