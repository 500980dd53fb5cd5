"""``http`` agents POST JSON to an existing agent service (the guide's FastAPI reasoning agent).

Request body: ``{"input": ..., "context": ..., "plan_id": ..., "step": ...}`` with an ``Idempotency-Key``
header (the step id) so the service can recognise a retried call. A JSON response is the step's output.

A service may stream instead (``Accept`` offers both): ``text/event-stream`` whose ``chunk`` events
(or events without a name) carry text for the live progress and whose ``result`` event carries the
output as JSON; or ``application/x-ndjson`` lines ``{"chunk": "..."}`` then ``{"output": ...}``. A stream
without a result gives ``{"text": <the chunks joined>}``.

Options: url, timeout, headers (values may be ``${ENV}`` references, expanded when the registry loads),
header_env (header -> the name of an environment variable read at call time: secrets stay out of the
registry), and the SSRF guard's allowed_hosts / allow_private (see ``agents.egress``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
from httpx_sse import EventSource

from agents.base import Agent, AgentCall, AgentResult, AgentSpec
from agents.egress import EgressPolicy, KeptClient, guarded_client
from agents.errors import AgentBadOutput, AgentConfigError, AgentTimeout
from agents.kinds.transport import raise_for_status, request_errors

ACCEPT = "application/json, text/event-stream;q=0.9, application/x-ndjson;q=0.9"


class HttpAgent(Agent):
    kind = "http"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        url = spec.options.get("url")
        if not url:
            raise AgentConfigError(f"agent {spec.name!r}: an http agent needs 'url'")
        self.url: str = url
        self.headers = {str(k): str(v) for k, v in (spec.options.get("headers") or {}).items()}
        self.header_env = {str(k): str(v) for k, v in (spec.options.get("header_env") or {}).items()}
        self.policy = EgressPolicy.for_agent(spec.name, url, spec.options)
        # The agent's calls keep their client and connections (one per thread); each passes its own timeout.
        self.client = KeptClient(lambda: guarded_client(self.policy, timeout=30))

    def _headers(self, call: AgentCall) -> dict[str, str]:
        secrets = {header: os.environ.get(env, "") for header, env in self.header_env.items()}
        return {**self.headers, **secrets, "Idempotency-Key": call.step_id, "Accept": ACCEPT}

    def run(self, call: AgentCall) -> AgentResult:
        body = {"input": call.input, "context": call.context, "plan_id": call.plan_id, "step": call.step_key}
        deadline = time.monotonic() + call.timeout
        with request_errors(self.spec.name), self.client.get().stream(
                "POST", self.url, json=body, headers=self._headers(call), timeout=call.timeout) as response:
            raise_for_status(self.spec.name, response)
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            if kind == "text/event-stream":
                return AgentResult(output=self._sse(response, call, deadline))
            if kind == "application/x-ndjson":
                return AgentResult(output=self._ndjson(response, call, deadline))
            response.read()
        try:
            return AgentResult(output=response.json())
        except ValueError as exc:
            raise AgentBadOutput(f"agent {self.spec.name!r} answered with non-JSON") from exc

    def _check(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise AgentTimeout(f"agent {self.spec.name!r} was still streaming at its timeout")

    def _result(self, data: str) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise AgentBadOutput(f"agent {self.spec.name!r}: the stream's result is not JSON") from exc

    def _sse(self, response: httpx.Response, call: AgentCall, deadline: float) -> Any:
        parts: list[str] = []
        for event in EventSource(response).iter_sse():
            self._check(deadline)
            if event.event == "result":
                return self._result(event.data)
            if event.event in ("message", "chunk"):
                parts.append(event.data)
                call.chunk(event.data)
        return {"text": "".join(parts)}

    def _ndjson(self, response: httpx.Response, call: AgentCall, deadline: float) -> Any:
        parts: list[str] = []
        for line in response.iter_lines():
            self._check(deadline)
            if not line.strip():
                continue
            item = self._result(line)
            if isinstance(item, dict) and "output" in item:
                return item["output"]
            text = str(item.get("chunk", "")) if isinstance(item, dict) else str(item)
            parts.append(text)
            call.chunk(text)
        return {"text": "".join(parts)}
