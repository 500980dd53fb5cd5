"""Horizontal scaling: two agent worker processes and two scheduler worker processes consume the same
queues for the same plans at once, while the reconciler (told that every queued message older than 1 s is
lost) sends duplicates of waiting steps: every step still runs exactly once and every plan finishes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from config.celery import app
from orchestrator import services
from orchestrator.models import Plan, Step
from tests.conftest import start_worker, stop_worker, wait_for_plan
from tests.fakes import FakeServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PLANS, WIDTH = 4, 20


def _scaled_agents(directory: Path, fake_server: FakeServer) -> Path:
    """An http agent on a queue only this test's workers consume (the session's worker never takes one)."""
    path = directory / "agents.scaled.yaml"
    path.write_text(f"""
agents:
  scaled:
    kind: http
    url: {fake_server.url}/agent
    allow_private: true
    timeout: 20
    queue: scaled
""")
    return path


def _totals(name: str) -> dict[str, int]:
    stats = app.control.inspect(destination=[name], timeout=2).stats() or {}
    return dict(stats.get(name, {}).get("total", {}))


def test_two_workers_on_one_queue_run_every_step_once(
        user: Any, fake_server: FakeServer, test_agents: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agents_file = f"{test_agents}:{_scaled_agents(tmp_path, fake_server)}"
    monkeypatch.setenv("AGENTS_FILE", agents_file)
    monkeypatch.setattr(settings, "AGENTS_FILE", agents_file)
    from agents import registry

    registry.reload()  # this process validates the plans: it must know the agent too
    agents = [start_worker("scaled", agents_file, concurrency=4) for _ in range(2)]
    monkeypatch.setenv("ORCH_REQUEUE_AFTER", "1")  # the scheduler workers' reconciler re-sends eagerly
    schedulers = [start_worker("scaled-scheduler", agents_file, concurrency=2) for _ in range(2)]
    try:
        plans = [services.plan_create(owner=user, request=f"scaled {n}", steps=[
            *({"key": f"s{i}", "agent": "scaled", "input": {"sleep": 0.05, "n": i}} for i in range(WIDTH)),
            {"key": "join", "agent": "scaled", "depends_on": [f"s{i}" for i in range(WIDTH)]},
        ]) for n in range(PLANS)]
        deadline = time.monotonic() + 90
        while Plan.objects.filter(id__in=[p.id for p in plans], status="running").exists():
            assert time.monotonic() < deadline, "plans did not finish"
            app.send_task("orchestrator.reconcile", queue="scaled-scheduler")  # beat's job, faster
            time.sleep(0.25)
        ended = [wait_for_plan(p.id) for p in plans]
        agent_totals = [_totals(name) for _, name in agents]
        scheduler_totals = [_totals(name) for _, name in schedulers]
    finally:
        for process, _ in [*agents, *schedulers]:
            stop_worker(process)
        monkeypatch.setattr(settings, "AGENTS_FILE", test_agents)
        registry.reload()

    assert [p.status for p in ended] == ["succeeded"] * PLANS
    steps = list(Step.objects.filter(plan__in=plans))
    assert len(steps) == PLANS * (WIDTH + 1)
    assert {fake_server.call_count(str(s.id)) for s in steps} == {1}  # each agent call made exactly once
    assert {s.attempt for s in steps} == {1}
    # Both agent workers took steps, and both scheduler workers ran the reconciler.
    assert {s.worker.split("/")[0] for s in steps} == {name for _, name in agents}
    assert all(t.get("orchestrator.run_step", 0) > 0 for t in agent_totals)
    assert all(t.get("orchestrator.reconcile", 0) > 0 for t in scheduler_totals)
    # The reconciler did send duplicates (so the claim, not luck, kept each step to one run).
    delivered = sum(t.get("orchestrator.run_step", 0) for t in agent_totals)
    print(f"run_step deliveries: {delivered} for {len(steps)} steps")
