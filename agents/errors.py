"""What an agent call can raise. Transient errors are retried (tenacity); every other error is terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import DomainError

if TYPE_CHECKING:
    from agents.base import Usage


class AgentError(DomainError):
    """A terminal failure: the step fails with this code and message, no retry. ``usage``, when the agent
    knows it, is what the failed call spent anyway (it counts toward totals and budgets)."""

    code = "agent.error"
    usage: Usage | None = None


class UnknownAgent(AgentError):
    code = "agent.unknown"
    http_status = 404


class AgentConfigError(AgentError):
    code = "agent.misconfigured"


class AgentBadOutput(AgentError):
    code = "agent.bad_output"


class TransientAgentError(AgentError):
    """Timeouts, connection errors, 429 and 5xx: worth another try, after ``retry_after`` seconds if set."""

    code = "agent.transient"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class AgentTimeout(TransientAgentError):
    code = "agent.timeout"


class CircuitOpen(AgentError):
    """The agent's circuit breaker is open (it failed repeatedly) and it has no fallback: fail fast."""

    code = "agent.circuit_open"


class EgressRefused(AgentError):
    """The SSRF guard refused an address: a host not allow-listed, or a private / loopback /
    link-local (cloud metadata) address the agent was not allowed to reach. Never retried."""

    code = "agent.egress_refused"


class AgentToolError(AgentError):
    """An MCP tool answered with ``isError``."""

    code = "agent.tool_error"


class DeadlineExceeded(AgentError):
    """The step's whole run (waits for limits and slots, every try, backoff) reached its deadline."""

    code = "agent.deadline_exceeded"
