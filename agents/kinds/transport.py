"""Turn HTTP outcomes into agent errors: transient (retried) or terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def raise_for_status(agent: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    text = response.text[:300]
    if status == 429:
        raise TransientAgentError(f"agent {agent!r} is rate limited (429): {text}", code="agent.rate_limited",
                                  retry_after=_retry_after(response))
    if status >= 500:
        raise TransientAgentError(f"agent {agent!r} failed with {status}: {text}", code="agent.server_error",
                                  retry_after=_retry_after(response))
    raise AgentError(f"agent {agent!r} refused the call with {status}: {text}", code="agent.rejected")
