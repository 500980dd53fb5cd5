"""The terminal follower shows agent text verbatim (issue 15): Rich never takes ``[offline x]`` or
``[/path]`` from a plan for markup (which deleted the first and crashed on the second), and it says plainly
when the answers are offline."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from rich.console import Console

from orchestrator import follow, services
from tests.conftest import wait_for_plan

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.usefixtures("idle_worker")]

TRICKY = "see [offline x] then [/path] and [bold]not bold[/bold]"


def _plan(user: Any) -> Any:
    plan = services.plan_create(owner=user, request=f"Tricky {TRICKY}", steps=[
        {"key": "broken", "agent": "fail", "input": {"message": f"cannot open [/path] {TRICKY}"}},
        {"key": "answer", "agent": "query_analyst", "input": {"prompt": TRICKY}}])
    return wait_for_plan(plan.id, timeout=60)


def test_the_follow_command_prints_agent_text_verbatim(user: Any, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(user)

    call_command("follow", str(plan.id), "--timeout", "5")

    out = capsys.readouterr().out
    assert f"cannot open [/path] {TRICKY}" in out  # the failed step's message, in the event lines
    assert plan.status == "failed"


def test_the_result_is_shown_verbatim_with_a_plain_offline_note(user: Any) -> None:
    plan = services.plan_create(owner=user, request="Tricky", steps=[
        {"key": "answer", "agent": "query_analyst", "input": {"prompt": TRICKY}}])
    plan = wait_for_plan(plan.id, timeout=60)
    for terminal in (False, True):  # the line-per-event path and the live table
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=terminal, width=300, color_system=None)

        follow.follow(plan.id, console=console, timeout=5)
        follow.timeline(plan, console=console)
        follow.summary(plan, console=console)

        out = buffer.getvalue()
        assert f"[offline gpt-4o-mini] query_analyst: {TRICKY} (#" in out
        assert "Note: these answers are offline (no LLM key is set" in out


def test_orchestrate_says_which_provider_answers(user: Any, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("orchestrate", f"Plan {TRICKY}", "--template", "research", "--follow", "--auto-approve",
                 "--timeout", "60")

    out = capsys.readouterr().out
    assert f"Plan {TRICKY}" in out.splitlines()[0]
    said = next(line for line in out.splitlines() if line.startswith("llm agents:"))
    assert "offline (no LLM key set: canned answers, no model is called) for " in said
    assert "query_analyst" in said and "synthesis_agent" in said
