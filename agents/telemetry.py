"""Spans around agent calls, named and attributed by the OpenTelemetry GenAI semantic conventions
(``invoke_agent {name}`` for any agent, ``chat {model}`` for an LLM call, with ``gen_ai.*`` attributes:
provider, request and response model, input and output tokens).

They use the API's global tracer: a no-op unless config.telemetry installed a provider
(OTEL_EXPORTER_OTLP_ENDPOINT set), so they cost nothing when tracing is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from agents.base import Usage

_tracer = trace.get_tracer("agents")


@contextmanager
def agent_span(*, agent: str, kind: str, step_id: str, attempt: int) -> Iterator[Span]:
    with _tracer.start_as_current_span(f"invoke_agent {agent}", kind=SpanKind.INTERNAL, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent, "orchestrator.agent.kind": kind,
        "orchestrator.step_id": step_id, "orchestrator.attempt": attempt,
    }) as span:
        yield span


@contextmanager
def llm_span(*, provider: str, model: str, max_tokens: int) -> Iterator[Span]:
    with _tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.system": provider,
        "gen_ai.request.model": model, "gen_ai.request.max_tokens": max_tokens,
    }) as span:
        yield span


def record_usage(span: Span, usage: Usage | None) -> None:
    if usage is None or not span.is_recording():
        return
    span.set_attribute("gen_ai.response.model", usage.model)
    span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
