"""The circuit breaker, shared by every worker process through Redis, and its fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.conf import settings

from agents import limits
from agents.api import AgentCall, agent_run, agent_status
from agents.errors import CircuitOpen
from tests.agents.fakes import AgentFakes
from tests.conftest import ROOT, _database_url_for, wait_for_plan

BREAKER = limits.BreakerConfig(failures=4, reset_after=1)


@pytest.fixture
def flaky(agent_fakes: AgentFakes) -> Iterator[AgentFakes]:
    limits.breaker_reset("flaky")
    agent_fakes.modes["flaky"] = 500
    yield agent_fakes
    agent_fakes.modes.pop("flaky", None)
    limits.breaker_reset("flaky")


def other_process(name: str, times: int) -> list[dict[str, str]]:
    """Call ``name`` from a separate Python process (its own Redis connections, no shared memory)."""
    env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "ORCH_EMBEDDED": "1",
           "DATABASE_URL": _database_url_for(settings.DATABASES["default"]["NAME"]),
           "AGENTS_FILE": str(settings.AGENTS_FILE), "LOG_LEVEL": "ERROR"}
    done = subprocess.run([sys.executable, "-m", "tests.agents.call_agent", name, str(times)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def call() -> AgentCall:
    return AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input={}, context={}, timeout=5)


def wait_until_trial_is_due(agent: str) -> None:
    deadline = time.monotonic() + 10
    while agent_status(agent).breaker.state != "half_open":
        assert time.monotonic() < deadline, "the breaker never became due for a trial"
        time.sleep(0.05)


def test_the_breaker_opens_across_two_processes_falls_back_then_half_opens_and_closes(flaky: AgentFakes) -> None:
    first = other_process("flaky", 2)
    assert first == [{"error": "agent.server_error"}] * 2
    assert agent_status("flaky").breaker.state == "closed" and agent_status("flaky").breaker.failures == 2

    second = other_process("flaky", 3)  # two more failures open it: that call and the next get the fallback

    assert second == [{"error": "agent.server_error"}] + [{"agent": "flaky_backup"}] * 2
    assert agent_status("flaky").breaker.state == "open" and agent_status("flaky").health == "unavailable"
    calls_while_open = flaky.count("svc/flaky")
    assert agent_run(name="flaky", call=call()).agent == "flaky_backup"
    assert flaky.count("svc/flaky") == calls_while_open, "an open breaker must not call the agent"

    flaky.modes["flaky"] = 200
    wait_until_trial_is_due("flaky")
    trial = other_process("flaky", 1)

    assert trial == [{"agent": "flaky"}]
    assert agent_status("flaky").breaker.state == "closed" and agent_status("flaky").health == "healthy"


def test_a_failed_trial_opens_the_breaker_again(flaky: AgentFakes) -> None:
    for _ in range(BREAKER.failures):
        limits.breaker_record("flaky", ok=False, config=BREAKER)
    wait_until_trial_is_due("flaky")

    assert agent_run(name="flaky", call=call()).agent == "flaky_backup"  # the trial failed: fallback

    assert agent_status("flaky").breaker.state == "open"


def test_only_one_trial_goes_through_while_half_open(flaky: AgentFakes) -> None:
    for _ in range(BREAKER.failures):
        limits.breaker_record("flaky", ok=False, config=BREAKER)
    wait_until_trial_is_due("flaky")

    allowed = [limits.breaker_allow("flaky", trial_lease=30) for _ in range(5)]

    assert allowed == [True, False, False, False, False]


def test_an_open_breaker_without_a_fallback_fails_fast_with_its_code(agent_fakes: AgentFakes) -> None:
    limits.breaker_reset("service_sse")
    try:
        for _ in range(settings.AGENT_BREAKER_FAILURES):
            limits.breaker_record("service_sse", ok=False, config=limits.BreakerConfig.of({}))

        with pytest.raises(CircuitOpen) as raised:
            agent_run(name="service_sse", call=call())

        assert raised.value.code == "agent.circuit_open"
    finally:
        limits.breaker_reset("service_sse")


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.usefixtures("idle_worker")
def test_a_step_on_an_agent_whose_breaker_is_open_runs_its_fallback(flaky: AgentFakes, user: Any) -> None:
    from orchestrator import services
    from orchestrator.models import Step

    for _ in range(BREAKER.failures):
        limits.breaker_record("flaky", ok=False, config=BREAKER)

    plan = services.plan_create(owner=user, request="fallback", steps=[{"key": "a", "agent": "flaky",
                                                                         "input": {"x": 1}}])
    plan = wait_for_plan(plan.id)

    step = Step.objects.get(plan=plan, key="a")
    assert plan.status == "succeeded"
    assert step.output == {"input": {"x": 1}, "from": []}
    assert step.usage is not None and step.usage["agent"] == "flaky_backup"


@contextmanager
def breaker_scripts(agent: str) -> Iterator[list[str]]:
    """The breaker scripts Redis runs on ``agent``'s key while the block runs (seen by MONITOR)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    marker = f"end-{uuid.uuid4()}"
    seen: list[str] = []
    with client.monitor() as monitor:

        def watch() -> None:
            for command in monitor.listen():
                text = command["command"]
                if marker in text:
                    return
                if text.lower().startswith("evalsha") and f"agents:breaker:{agent}" in text:
                    seen.append(text)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        yield seen
        client.echo(marker)
        watcher.join(timeout=10)
        assert not watcher.is_alive(), "MONITOR never saw the end marker"


def test_a_success_resets_counted_failures_and_a_clean_one_only_asks_the_breaker(flaky: AgentFakes) -> None:
    flaky.modes["flaky"] = 200
    limits.breaker_allow("flaky", trial_lease=1)  # both scripts loaded: MONITOR would see a first NOSCRIPT try
    limits.breaker_record("flaky", ok=False, config=BREAKER)  # one failure counted: a success must reset it

    with breaker_scripts("flaky") as seen:
        assert agent_run(name="flaky", call=call()).agent == "flaky"

    assert agent_status("flaky").breaker.failures == 0
    assert len(seen) == 2, seen  # admitted, then the reset recorded

    with breaker_scripts("flaky") as seen:
        assert agent_run(name="flaky", call=call()).agent == "flaky"

    assert len(seen) == 1, seen  # admitted clean: its success has nothing to change, so no second round trip
    assert agent_status("flaky").breaker.state == "closed"
