"""``mcp`` agents call tools on a real MCP server (tests/agents/mcp_tool_server.py) over stdio and HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agents.api import AgentCall, agent_run
from agents.base import AgentSpec
from agents.errors import AgentError, EgressRefused, TransientAgentError
from agents.kinds.mcp import McpAgent
from tests.agents.fakes import AgentFakes


def call(arguments: dict[str, Any], timeout: float = 30) -> AgentCall:
    return AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input=arguments, context={},
                     timeout=timeout)


def test_a_tool_over_stdio_returns_its_structured_result() -> None:
    result = agent_run(name="mcp_stdio", call=call({"a": 2, "b": 40}))

    assert result.output == {"sum": 42}


def test_a_tool_over_streamable_http_returns_its_result(agent_fakes: AgentFakes) -> None:
    chunks: list[str] = []
    result = agent_run(name="mcp_http", call=AgentCall(plan_id="p", step_id="s", step_key="s", attempt=1,
                                                       input={"text": "hi"}, context={}, timeout=30,
                                                       on_chunk=chunks.append))

    assert result.output == {"result": "HI"} and chunks == ["HI"]


def test_a_tool_error_fails_without_retry(agent_fakes: AgentFakes) -> None:
    with pytest.raises(AgentError) as raised:
        agent_run(name="mcp_failing", call=call({"message": "no way"}))

    assert raised.value.code == "agent.tool_error" and "no way" in raised.value.message


def test_an_unreachable_server_is_a_transient_error() -> None:
    agent = McpAgent(AgentSpec(name="gone", kind="mcp", options={"url": "http://127.0.0.1:9/mcp", "tool": "x",
                                                                 "allow_private": True}))

    with pytest.raises(TransientAgentError) as raised:
        agent.run(call({}, timeout=5))

    assert raised.value.code == "agent.unreachable"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/mcp", "http://169.254.169.254/mcp", "http://[::ffff:127.0.0.1]:9/"])
def test_mcp_over_http_goes_through_the_ssrf_guard(url: str) -> None:
    agent = McpAgent(AgentSpec(name="inner", kind="mcp", options={"url": url, "tool": "x"}))

    with pytest.raises(EgressRefused):
        agent.run(call({}, timeout=5))
