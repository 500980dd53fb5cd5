"""Turn HTTP outcomes into agent errors: transient (retried) or terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from agents.errors import AgentError, AgentTimeout, TransientAgentError


@contextmanager
def request_errors(agent: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise AgentTimeout(f"agent {agent!r} timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise TransientAgentError(f"agent {agent!r} unreachable: {exc!r}", code="agent.unreachable") from exc


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None


def raise_for_status(agent: str, response: httpx.Response) -> None:
    """Nothing below 400; 429 and 5xx raise TransientAgentError (with Retry-After); other 4xx AgentError.
    Works on a streamed response too (the error body is read)."""
    status = response.status_code
    if status < 400:
        return
    text = response.read().decode(errors="replace")[:300]
    if status == 429:
        raise TransientAgentError(f"agent {agent!r} is rate limited (429): {text}", code="agent.rate_limited",
                                  retry_after=_retry_after(response))
    if status >= 500:
        raise TransientAgentError(f"agent {agent!r} failed with {status}: {text}", code="agent.server_error",
                                  retry_after=_retry_after(response))
    raise AgentError(f"agent {agent!r} refused the call with {status}: {text}", code="agent.rejected")
