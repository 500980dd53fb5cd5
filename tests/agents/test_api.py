"""GET /api/agents/ and the guide's GET /agents: the registry with health and breaker state."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from agents import limits
from agents.api import AgentCall, agent_run
from tests.conftest import api_client

pytestmark = pytest.mark.django_db



def test_agents_are_listed_with_kind_capabilities_queue_health_and_breaker(user: Any) -> None:
    response = api_client(user).get("/api/agents/")

    assert response.status_code == 200
    agents = {a["name"]: a for a in response.json()}
    assert agents["reasoning_agent"]["kind"] == "llm"
    assert "logic" in agents["reasoning_agent"]["capabilities"]
    assert agents["reasoning_agent"]["queue"] == "agents"
    assert agents["mcp_stdio"]["kind"] == "mcp"
    assert agents["flaky"]["fallback"] == "flaky_backup"
    assert {"health", "breaker"} <= set(agents["echo"])


def test_an_open_breaker_shows_as_unavailable(user: Any) -> None:
    limits.breaker_reset("service_ndjson")
    for _ in range(3):
        limits.breaker_record("service_ndjson", ok=False, config=limits.BreakerConfig(3, 60))
    try:
        agent = api_client(user).get("/api/agents/service_ndjson/").json()
    finally:
        limits.breaker_reset("service_ndjson")

    assert agent["health"] == "unavailable"
    assert agent["breaker"]["state"] == "open" and agent["breaker"]["failures"] == 3


def test_the_guides_path_lists_the_same_agents_in_the_guides_shape(user: Any) -> None:
    client = api_client(user)

    guide = client.get("/agents").json()
    full = client.get("/api/agents/").json()

    assert guide == {"agents": [{"id": a["name"], "capabilities": a["capabilities"], "status": a["health"]}
                                for a in full]}


def test_an_unknown_agent_is_a_404_with_a_code(user: Any) -> None:
    response = api_client(user).get("/api/agents/nope/")

    assert response.status_code == 404 and response.json()["error"]["code"] == "agent.unknown"


def test_without_a_token_it_is_401() -> None:
    assert APIClient().get("/api/agents/").status_code == 401


def test_the_admin_shows_the_agents_page(admin_client: Any) -> None:
    response = admin_client.get("/admin/agents/agentboard/")

    assert response.status_code == 200
    assert b"reasoning_agent" in response.content and b"breaker" in response.content


def test_a_hung_python_agent_times_out_without_a_thread_per_attempt() -> None:
    import threading
    import time

    from agents.errors import AgentTimeout
    from tests.agents import hang

    def hung_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("agent-hang"))

    try:
        for _ in range(3):  # each run: two tries of 0.5 s (the agent's retries), then agent.timeout
            started = time.monotonic()
            with pytest.raises(AgentTimeout):
                agent_run(name="hang", call=AgentCall(plan_id="p", step_id="s", step_key="k", attempt=1,
                                                      input={}, context={}, timeout=0.5))
            assert time.monotonic() - started < 5
        assert hung_threads() <= 2  # its pool (max_concurrency 2), however many tries hung
    finally:
        hang.released.set()


def test_an_inline_python_agent_runs_in_the_callers_thread_and_fails_the_same_way() -> None:
    import threading

    from agents.errors import AgentError

    def call(name: str, input: dict[str, Any]) -> Any:
        return agent_run(name=name, call=AgentCall(plan_id="p", step_id="s", step_key="k", attempt=1,
                                                   input=input, context={}, timeout=5)).output

    here = threading.current_thread().name
    assert call("where_inline", {}) == {"thread": here}
    assert call("where", {})["thread"].startswith("agent-where")  # its own pool otherwise
    for name in ("where", "where_inline"):
        with pytest.raises(AgentError) as failed:
            call(name, {"fail": 1})
        assert failed.value.code == "agent.python_error" and "asked to fail" in failed.value.message
