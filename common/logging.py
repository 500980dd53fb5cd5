"""Structured logs: one JSON object per line, with a dotted event name and the ids passed as ``extra``.

    logger.info("orchestrator.step.claimed", extra={"plan_id": ..., "step_id": ..., "attempt": 2})

Every line also carries the ids bound with :func:`bind` for the current task (a Celery task binds its
plan, step and attempt: config.celery) and, while a trace is recorded, its ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}
_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_bound", default=None)


def bind(**ids: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add ``ids`` to every log line of this context (thread / task) until :func:`unbind`."""
    return _bound.set({**(_bound.get() or {}), **{k: v for k, v in ids.items() if v is not None}})


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _bound.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(_bound.get() or {})
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args  # uvicorn's access-log arguments
            payload.update(client=client, method=method, path=path, status=status)
        payload.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            payload["trace_id"] = format(context.trace_id, "032x")
            payload["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
