"""What other apps may call: list and describe agents, and run one with retries on transient errors."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from tenacity import RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tenacity import Retrying

from agents import registry
from agents.base import AgentCall, AgentResult, AgentSpec, Usage
from agents.errors import AgentError, TransientAgentError, UnknownAgent

__all__ = ["AgentCall", "AgentError", "AgentResult", "AgentSpec", "Usage", "UnknownAgent",
           "agent_get", "agent_list", "agent_run"]

RetryHook = Callable[[int, TransientAgentError, float], None]


def agent_list() -> list[AgentSpec]:
    return sorted(registry.specs().values(), key=lambda spec: spec.name)


def agent_get(name: str) -> AgentSpec:
    """Raises UnknownAgent."""
    try:
        return registry.specs()[name]
    except KeyError:
        raise UnknownAgent(f"no agent named {name!r}") from None


_backoff = wait_exponential_jitter(multiplier=0.5, max=20, jitter=0.5)


def _wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, but never sooner than the server's Retry-After."""
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None) or 0.0
    return max(float(retry_after), _backoff(state))


def agent_run(*, name: str, call: AgentCall, on_retry: RetryHook | None = None) -> AgentResult:
    """Run agent ``name``; retry only TransientAgentError, up to AGENT_RETRY_ATTEMPTS tries in all.

    Must not be called inside a database transaction: it waits on the network. Raises AgentError.
    """
    target = registry.agent(name)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(exc, TransientAgentError) and state.next_action:
            on_retry(state.attempt_number, exc, state.next_action.sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientAgentError),
        stop=stop_after_attempt(settings.AGENT_RETRY_ATTEMPTS),
        wait=_wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(target.run, call)
