"""``http`` agents POST JSON to an existing agent service (the guide's FastAPI reasoning agent).

Request body: ``{"input": ..., "context": ..., "plan_id": ..., "step": ...}`` with an ``Idempotency-Key``
header (the step id) so the service can recognise a retried call. The JSON response is the step's output.
"""

from __future__ import annotations

import httpx

from agents.base import Agent, AgentCall, AgentResult, AgentSpec
from agents.errors import AgentConfigError, AgentError
from agents.kinds.transport import raise_for_status, request_errors


class HttpAgent(Agent):
    kind = "http"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        self.url = spec.options.get("url")
        if not self.url:
            raise AgentConfigError(f"agent {spec.name!r}: an http agent needs 'url'")
        self.headers = dict(spec.options.get("headers") or {})

    def run(self, call: AgentCall) -> AgentResult:
        body = {"input": call.input, "context": call.context, "plan_id": call.plan_id, "step": call.step_key}
        headers = {**self.headers, "Idempotency-Key": call.step_id}
        with request_errors(self.spec.name):
            response = httpx.post(self.url, json=body, headers=headers, timeout=call.timeout)
        raise_for_status(self.spec.name, response)
        try:
            return AgentResult(output=response.json())
        except ValueError as exc:
            raise AgentError(f"agent {self.spec.name!r} answered with non-JSON", code="agent.bad_output") from exc
