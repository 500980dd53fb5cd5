"""LLM agents against the fake OpenAI-compatible and Anthropic servers (tests/agents/fakes.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from agents.api import AgentCall, agent_estimate, agent_run
from agents.errors import AgentError, AgentTimeout, TransientAgentError
from tests.agents.fakes import ANSWER, AgentFakes


def call(prompt: str, *, timeout: float = 10, chunks: list[str] | None = None) -> AgentCall:
    return AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input={"prompt": prompt},
                     context={}, timeout=timeout, on_chunk=chunks.append if chunks is not None else None)


def key() -> str:
    return f"key:{uuid.uuid4().hex[:8]}"


def test_openai_streams_chunks_and_reports_usage_and_cost(agent_fakes: AgentFakes) -> None:
    chunks: list[str] = []

    result = agent_run(name="gpt", call=call(f"hello {key()}", chunks=chunks))

    assert result.output == {"text": ANSWER, "model": "fake-gpt"}
    assert len(chunks) == len(ANSWER.split()) and "".join(chunks) == ANSWER
    assert result.usage is not None and result.usage.completion_tokens == len(ANSWER.split())
    expected = (Decimal("2.5") * result.usage.prompt_tokens + Decimal(10) * result.usage.completion_tokens) / 10**6
    assert result.usage.cost == expected.quantize(Decimal("0.000001")) > 0


def test_openai_stream_assembles_tool_calls(agent_fakes: AgentFakes) -> None:
    result = agent_run(name="gpt", call=call(f"look it up tool:lookup {key()}"))

    assert result.output["tool_calls"] == [{"id": "call_1", "name": "lookup", "arguments": {"word": "alpha"}}]


def test_openai_without_streaming_returns_tool_calls(agent_fakes: AgentFakes) -> None:
    result = agent_run(name="gpt_plain", call=call(f"tool:lookup {key()}"))

    assert result.output["tool_calls"][0]["name"] == "lookup"
    assert result.output["tool_calls"][0]["arguments"] == {"word": "alpha"}


def test_anthropic_streams_text_tool_use_and_usage(agent_fakes: AgentFakes, monkeypatch: Any) -> None:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-test")
    chunks: list[str] = []

    result = agent_run(name="claude", call=call(f"hi tool:lookup {key()}", chunks=chunks))

    assert "".join(chunks) == ANSWER == result.output["text"]
    assert result.output["tool_calls"] == [{"id": "toolu_1", "name": "lookup", "arguments": {"word": "alpha"}}]
    _model, prompt_tokens, completion_tokens = agent_fakes.usage_of("fake-claude")[-1]
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (prompt_tokens, completion_tokens)


def test_a_429_is_retried_after_its_retry_after_then_succeeds(agent_fakes: AgentFakes) -> None:
    k = key()
    retries: list[tuple[int, str, float]] = []

    result = agent_run(name="gpt", call=call(f"fail:429*1 retry_after:1 {k}"),
                       on_retry=lambda n, exc, delay: retries.append((n, exc.code, delay)))

    assert result.output["text"] == ANSWER
    assert agent_fakes.count(k) == 2
    assert len(retries) == 1 and retries[0][1] == "agent.rate_limited" and retries[0][2] >= 1.0


def test_a_500_is_retried(agent_fakes: AgentFakes) -> None:
    k = key()

    result = agent_run(name="gpt", call=call(f"fail:500*2 {k}"))

    assert result.output["text"] == ANSWER and agent_fakes.count(k) == 3


def test_a_400_is_not_retried(agent_fakes: AgentFakes) -> None:
    k = key()

    with pytest.raises(AgentError) as raised:
        agent_run(name="gpt", call=call(f"fail:400*5 {k}"))

    assert raised.value.code == "agent.rejected" and not isinstance(raised.value, TransientAgentError)
    assert agent_fakes.count(k) == 1


def test_a_retry_after_longer_than_the_limit_is_not_waited_for(agent_fakes: AgentFakes, settings: Any) -> None:
    settings.AGENT_RETRY_AFTER_MAX = 5
    k = key()

    with pytest.raises(TransientAgentError) as raised:
        agent_run(name="gpt", call=call(f"fail:429*5 retry_after:3600 {k}"))

    assert raised.value.code == "agent.rate_limited" and agent_fakes.count(k) == 1


def test_a_slow_provider_times_out_and_is_retried(agent_fakes: AgentFakes) -> None:
    k = key()

    with pytest.raises(AgentTimeout):
        agent_run(name="gpt", call=call(f"slow:1.5 {k}", timeout=0.3))

    assert agent_fakes.count(k) == 3  # gpt has retries: 3


def test_the_estimate_bounds_the_real_call(agent_fakes: AgentFakes) -> None:
    prompt = f"estimate me please {key()} " + "word " * 200

    estimate = agent_estimate("gpt", {"prompt": prompt})
    result = agent_run(name="gpt", call=call(prompt))

    assert result.usage is not None
    assert estimate.tokens >= result.usage.total_tokens
    assert estimate.cost >= result.usage.cost > 0


def test_agents_without_an_llm_estimate_zero() -> None:
    assert agent_estimate("echo", {"anything": 1}).tokens == 0
