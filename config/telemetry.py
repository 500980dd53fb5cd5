"""OpenTelemetry tracing, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

``setup(service)`` is called once per process from the entry points: ``config.asgi`` / ``config.wsgi`` for
web processes and Celery's ``worker_init`` / ``worker_process_init`` / ``beat_init`` signals
(``config.celery``). With the variable unset it returns before importing the SDK or any instrumentation:
the code paths then meet only the API's no-op tracer (``agents.telemetry`` uses it), at no measurable cost.

With it set, spans go over OTLP/HTTP (protobuf) to ``$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`` (the
exporter's own ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables apply), from the official
instrumentations: Django (each request), Celery (publish and run; the trace context rides in the message
headers, so a step's task continues the trace of the request that queued it), httpx (agent and LLM calls),
psycopg and Redis. ``OTEL_SERVICE_NAME`` overrides the service name; ``OTEL_INSTRUMENT_DB=0`` leaves out
the per-query psycopg spans (they are the bulk of a busy trace).
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("config.telemetry")

_lock = threading.Lock()
_state: dict[str, object] = {}


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup(service: str) -> bool:
    """Install the tracer provider and the instrumentations once in this process; True when tracing is on.
    Safe to call more than once (later calls are no-ops)."""
    if not enabled():
        return False
    with _lock:
        if "provider" in _state:
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service,
                                    "service.namespace": "agent-orchestrator"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _state["provider"] = provider
        _instrument()
        log.info("config.telemetry.on", extra={"service": service,
                                               "endpoint": os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]})
        return True


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    RedisInstrumentor().instrument()
    if os.environ.get("OTEL_INSTRUMENT_DB", "1") != "0":
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument(enable_commenter=False)


def shutdown() -> None:
    """Flush the spans still batched (a worker's warm shutdown); a no-op when tracing is off."""
    provider = _state.get("provider")
    if provider is not None:
        provider.shutdown()  # type: ignore[attr-defined]
