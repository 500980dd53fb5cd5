"""What other apps may call: list and describe agents, estimate a call, and run one with retries on
transient errors, behind its circuit breaker, concurrency limit and rate limits (shared in Redis)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.conf import settings
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from agents import cache, limits, registry, routing, telemetry
from agents.base import AgentCall, AgentResult, AgentSpec, Usage
from agents.costs import BudgetCheck, Estimate, Totals, budget_check, cost_of, priced
from agents.egress import guarded_client, webhook_check, webhook_policy
from agents.errors import (
    AgentConfigError,
    AgentError,
    CircuitOpen,
    DeadlineExceeded,
    EgressRefused,
    TransientAgentError,
    UnknownAgent,
)
from agents.kinds.llm import JUDGE_REQUEST, LlmAgent
from agents.providers import LlmChoice, llm_choices, llm_log_choices, llm_summary
from agents.streaming import ChunkBuffer

__all__ = [
    "AgentCall",
    "AgentConfigError",
    "EgressRefused",
    "AgentError",
    "AgentResult",
    "AgentSpec",
    "AgentStatus",
    "TransientAgentError",
    "BudgetCheck",
    "ChunkBuffer",
    "Estimate",
    "LlmChoice",
    "JUDGE_REQUEST",
    "Totals",
    "UnknownAgent",
    "Usage",
    "agent_breaker_reset",
    "agent_estimate",
    "agent_get",
    "agent_list",
    "agent_run",
    "agent_status",
    "budget_check",
    "llm_choices",
    "llm_log_choices",
    "llm_summary",
    "on_call",
    # the SSRF guard, for every other app's outbound HTTP (approval escalations, webhooks)
    "guarded_client",
    "webhook_check",
    "webhook_policy",
]

log = logging.getLogger("agents")

RetryHook = Callable[[int, TransientAgentError, float], None]
# (agent name, call) -> the call to make instead, and marks for its usage (e.g. {"variant": ...}).
CallHook = Callable[[str, AgentCall], tuple[AgentCall, dict[str, Any]]]
_call_hooks: list[CallHook] = []


def on_call(hook: CallHook) -> None:
    """Let another app shape calls before they run (the experiments app's variants register here in its
    AppConfig.ready(), so this app never imports it). A hook must be fast and must not raise."""
    _call_hooks.append(hook)


def _hooked(name: str, call: AgentCall) -> tuple[AgentCall, dict[str, Any]]:
    marks: dict[str, Any] = {}
    for hook in _call_hooks:
        call, more = hook(name, call)
        marks.update(more)
    return call, marks


def agent_list() -> list[AgentSpec]:
    return sorted(registry.specs().values(), key=lambda spec: spec.name)


def agent_get(name: str) -> AgentSpec:
    """Raises UnknownAgent."""
    try:
        return registry.specs()[name]
    except KeyError:
        raise UnknownAgent(f"no agent named {name!r}") from None


# --- estimates ------------------------------------------------------------------------------------------


def agent_estimate(name: str, input: dict[str, Any], context: dict[str, Any] | None = None) -> Estimate:
    """A conservative upper bound of one call of agent ``name``: prompt tokens (3 characters a token)
    plus the agent's max_tokens, priced by the price table. Agents that use no LLM estimate zero.
    Raises UnknownAgent."""
    agent_get(name)
    target = registry.agent(name)
    if not isinstance(target, LlmAgent):
        return Estimate(0, Decimal(0))
    prompt = target.prompt_tokens_bound(input, context or {})
    return Estimate(prompt + target.max_tokens, cost_of(target.model, prompt, target.max_tokens))


# --- status ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStatus:
    """An agent and how it is doing: ``health`` is ``healthy`` (breaker closed, no recent failures),
    ``degraded`` (failures, or a trial call pending) or ``unavailable`` (breaker open)."""

    spec: AgentSpec
    breaker: limits.BreakerState
    in_flight: int | None

    @property
    def health(self) -> str:
        if self.breaker.state == "open":
            return "unavailable"
        return "degraded" if self.breaker.state == "half_open" or self.breaker.failures else "healthy"


def agent_status(name: str) -> AgentStatus:
    """Raises UnknownAgent."""
    spec = agent_get(name)
    in_flight = limits.slots_in_use(name) if spec.max_concurrency else None
    return AgentStatus(spec, limits.breaker_state(name), in_flight)


def agent_breaker_reset(name: str) -> None:
    """Close an agent's breaker by hand. Raises UnknownAgent."""
    agent_get(name)
    limits.breaker_reset(name)
    log.warning("agents.breaker.reset", extra={"agent": name})


# --- running --------------------------------------------------------------------------------------------


_backoff = wait_exponential_jitter(multiplier=0.5, max=20, jitter=0.5)


def _wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, but never sooner than the server's Retry-After."""
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None) or 0.0
    return max(float(retry_after), _backoff(state))


class _stop_at_deadline(stop_base):
    """Give up when the next try could only start after the run's deadline."""

    def __init__(self, call: AgentCall) -> None:
        self.call = call

    def __call__(self, state: RetryCallState) -> bool:
        return self.call.deadline is not None and self.call.remaining() <= (state.upcoming_sleep or 0)


class _stop_on_long_retry_after(stop_base):
    """Give up at once when the server asks for a longer wait than AGENT_RETRY_AFTER_MAX: a worker
    thread should not sleep for an hour; the step fails with the error's code instead."""

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        return float(getattr(exc, "retry_after", None) or 0) > settings.AGENT_RETRY_AFTER_MAX


def _left(call: AgentCall) -> float:
    """Seconds left for waits before the run's deadline. Raises DeadlineExceeded when none are."""
    left = call.remaining()
    if left <= 0:
        raise DeadlineExceeded(f"step {call.step_key!r} reached its deadline before its agent answered")
    return left


def _limited(spec: AgentSpec, target: Any, call: AgentCall) -> AgentResult:
    """One try under the agent's concurrency limit and rate limits. Every wait ends by the run's deadline,
    and the try itself gets its timeout or whatever is left before the deadline, whichever is shorter."""
    limit = registry.rate_limits().get(spec.rate_limit or "")
    reserved = 0
    if limit is not None and limit.requests_per_minute:
        limits.rate_acquire(f"{limit.name}:requests", per_minute=limit.requests_per_minute, burst=limit.burst,
                            wait=_left(call))
    if limit is not None and limit.tokens_per_minute and isinstance(target, LlmAgent):
        reserved = target.prompt_tokens_bound(call.input, call.context) + target.max_tokens_for(call)
        limits.rate_acquire(f"{limit.name}:tokens", per_minute=limit.tokens_per_minute,
                            burst=max(limit.burst, limit.tokens_per_minute // 10), cost=reserved, wait=_left(call))
    with limits.concurrency_slot(spec.name, limit=spec.max_concurrency, lease=call.timeout + 30,
                                 wait=_left(call)):
        _left(call)
        result: AgentResult = target.run(replace(call, timeout=call.try_timeout()))
    if reserved and limit is not None and limit.tokens_per_minute:
        used = result.usage.total_tokens if result.usage else 0
        limits.rate_refund(f"{limit.name}:tokens", per_minute=limit.tokens_per_minute, cost=reserved - used)
    return result


def _attempt(spec: AgentSpec, call: AgentCall) -> AgentResult:
    """One try behind the breaker: refused while it is open (CircuitOpen), and its outcome recorded.
    Transient errors count as failures; an answer, even a refusal (4xx), shows the agent is up.
    ``python`` agents have a breaker only when their configuration gives one (``breaker:``)."""
    if spec.kind == "python" and not spec.breaker:
        # In-process code: nothing remote to protect, so no breaker (two Redis round trips) unless configured.
        return _limited(spec, registry.agent(spec.name), call)
    config = limits.BreakerConfig.of(spec.breaker)
    admission = limits.breaker_admit(spec.name, trial_lease=call.timeout + 5)
    if not admission.allowed:
        raise CircuitOpen(f"agent {spec.name!r} is failing: its circuit breaker is open")
    try:
        result = _limited(spec, registry.agent(spec.name), call)
    except TransientAgentError:
        limits.breaker_record(spec.name, ok=False, config=config)
        raise
    except (CircuitOpen, EgressRefused, DeadlineExceeded):
        raise
    except AgentError:
        if not admission.clean:
            limits.breaker_record(spec.name, ok=True, config=config)
        raise
    if not admission.clean:  # admitted with no failure counted: its success changes nothing
        limits.breaker_record(spec.name, ok=True, config=config)
    return result


def _run_one(spec: AgentSpec, call: AgentCall, on_retry: RetryHook | None) -> AgentResult:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(exc, TransientAgentError) and state.next_action:
            on_retry(state.attempt_number, exc, state.next_action.sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientAgentError),
        stop=(stop_after_attempt(spec.retries or settings.AGENT_RETRY_ATTEMPTS) | _stop_on_long_retry_after()
              | _stop_at_deadline(call)),
        wait=_wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(_attempt, spec, call)


def agent_run(*, name: str, call: AgentCall, on_retry: RetryHook | None = None) -> AgentResult:
    """Run agent ``name``; retry only TransientAgentError (timeouts, connection errors, 429 after its
    Retry-After, 5xx), up to the agent's ``retries`` or AGENT_RETRY_ATTEMPTS tries in all, with
    exponential backoff and jitter.

    While the agent's breaker is open its ``fallback`` runs instead (and that one's, in turn), also for
    the call whose failure opened it; with no fallback the call fails at once with ``agent.circuit_open``.
    The result's ``usage`` carries its cost from the price table; ``agent`` names the agent that answered.

    Issue 14: hooks (``on_call``) may override the call's prompt or model (an experiment's variant); an
    agent with ``cache`` answers an identical call from Redis at no cost; one with ``cheap_model`` routes a
    simple input to it first (agents/routing.py). How a call was served is in ``usage.marks``.

    Must not be called inside a database transaction: it waits on the network. Raises AgentError.
    """
    tried: list[str] = []
    original = call
    while True:
        spec = agent_get(name)
        tried.append(name)
        started = time.monotonic()
        # experiments: a running experiment's variant may override this call's prompt or model.
        call, marks = _hooked(name, original)
        try:
            with telemetry.agent_span(agent=name, kind=spec.kind, step_id=call.step_id, attempt=call.attempt):
                result = _served(spec, call, on_retry)
        except (CircuitOpen, TransientAgentError) as exc:
            # Fall back while the breaker is open, also when this very call's failure opened it.
            if spec.fallback is None or spec.fallback in tried:
                raise
            if not isinstance(exc, CircuitOpen) and limits.breaker_state(name).state != "open":
                raise
            log.warning("agents.fallback", extra={"agent": name, "fallback": spec.fallback,
                                                  "step_id": call.step_id})
            name = spec.fallback
            continue
        log.debug("agents.call.done", extra={"agent": name, "step_id": call.step_id,
                                            "seconds": round(time.monotonic() - started, 3)})
        usage = result.usage if result.usage is None or "routed" in result.usage.marks else priced(result.usage)
        if usage is not None and marks:
            usage = replace(usage, marks={**usage.marks, **marks})
        return replace(result, usage=usage, agent=name)


def _served(spec: AgentSpec, call: AgentCall, on_retry: RetryHook | None) -> AgentResult:
    """The response cache around routing around the tries (each with its retries)."""
    target = registry.agent(spec.name)
    main_model = target.model if isinstance(target, LlmAgent) else ""
    return cache.cached_run(spec, call, lambda c: routing.routed_run(
        spec, c, lambda r: _run_one(spec, r, on_retry), main_model=main_model))

