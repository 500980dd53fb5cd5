"""What an agent call can raise. Transient errors are retried (tenacity); every other error is terminal."""

from __future__ import annotations

from common.errors import DomainError


class AgentError(DomainError):
    """A terminal failure: the step fails with this code and message, no retry."""

    code = "agent.error"


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
