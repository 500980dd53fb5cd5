"""Real local servers the tests start: an agent service and an OpenAI-compatible LLM.

One threaded HTTP server on a free loopback port serves:

* ``POST /agent``: an HTTP agent. Body ``input`` may hold ``gate`` (a name: the call waits until the test
  opens that gate, see :meth:`FakeServer.open_gate`), ``sleep`` (seconds), ``status`` (an HTTP status
  to answer with), ``unstorable`` (answer with U+0000 and a lone surrogate, which Postgres cannot hold) and
  ``fail_first`` (answer 400 to the step's first N calls). Each call is counted under its Idempotency-Key
  header (``GET /calls/<key>``).
* ``POST /v1/chat/completions``: an OpenAI-compatible chat API. The planner's answer is chosen by a
  ``scenario:NAME`` word in the request text (see PLANS); other prompts get a plain text answer. A
  ``sleep:SECONDS`` word delays the answer, and calls are counted under a ``tag:NAME`` word
  (:meth:`FakeServer.call_count` of ``chat:NAME``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PLANS: dict[str, str] = {
    "good": json.dumps({"steps": [
        {"key": "a", "agent": "echo", "input": {"prompt": "first"}},
        {"key": "b", "agent": "echo", "depends_on": ["a"]},
    ]}),
    "fenced": "```json\n" + json.dumps({"steps": [{"key": "only", "agent": "echo"}]}) + "\n```",
    "malformed": "Sure! Here is your plan: steps: a then b",
    "cycle": json.dumps({"steps": [
        {"key": "a", "agent": "echo", "depends_on": ["b"]},
        {"key": "b", "agent": "echo", "depends_on": ["a"]},
    ]}),
    "unknown_agent": json.dumps({"steps": [{"key": "a", "agent": "summon_demon"}]}),
    "dangling": json.dumps({"steps": [{"key": "a", "agent": "echo", "depends_on": ["ghost"]}]}),
    "too_many": json.dumps({"steps": [{"key": f"s{i}", "agent": "echo"} for i in range(600)]}),
    "schema": json.dumps({"steps": [{"agent": "echo"}]}),
    "empty": json.dumps({"steps": []}),
    # issue 10: asked to extend a running plan, the planner adds a step that asks for another round
    "replan": json.dumps({"steps": [{"key": "more", "agent": "echo", "replan": True}]}),
}


class FakeServer:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.gates: dict[str, threading.Event] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.max_tokens: dict[str, Any] = {}  # the last max_tokens asked of each model
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.startswith("/calls/"):
                    with server.lock:
                        self._json(200, {"calls": server.calls[self.path.removeprefix("/calls/")]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/agent":
                    self._agent(body)
                elif self.path == "/webhook":
                    with server.lock:
                        server.webhooks.append(body)
                    self._json(200, {"ok": True})
                elif self.path == "/v1/chat/completions":
                    self._chat(body)
                else:
                    self._json(404, {"error": "not found"})

            def _agent(self, body: dict[str, Any]) -> None:
                key = self.headers.get("Idempotency-Key", "")
                with server.lock:
                    server.calls[key] += 1
                step_input = body.get("input") or {}
                if step_input.get("gate"):  # held until the test opens the gate (at most a minute)
                    server.gate(str(step_input["gate"])).wait(timeout=60)
                time.sleep(float(step_input.get("sleep", 0)))
                status = int(step_input.get("status", 200))
                if server.call_count(key) <= int(step_input.get("fail_first", 0)):  # then it can be retried
                    status = 400
                answer = f"handled {body.get('step')}" + ("\x00 and \ud800" if step_input.get("unstorable") else "")
                self._json(status, {"answer": answer, "context": sorted(body["context"]), "input": step_input}
                           if status == 200 else {"detail": f"status {status} as asked"})

            def _chat(self, body: dict[str, Any]) -> None:
                prompt = body["messages"][-1]["content"]
                words = dict(w.split(":", 1) for w in prompt.split() if w.count(":") == 1)
                scenario = words.get("scenario", "")
                if "tag" in words:
                    with server.lock:
                        server.calls[f"chat:{words['tag']}"] += 1
                time.sleep(float(words.get("sleep", "0").strip(".,") or 0))
                text = PLANS.get(scenario.strip(".,"), "plain answer") if body.get("response_format") else \
                    f"fake answer to: {prompt[:40]}"
                # experiments (issue 14): calls and max_tokens by model; a ``confidence:X`` word is reported back
                with server.lock:
                    server.calls[f"chat:{body['model']}"] += 1
                    server.max_tokens[body["model"]] = body.get("max_tokens")
                confidence = next((w.split(":", 1)[1] for w in prompt.split() if w.startswith("confidence:")), "")
                if confidence:
                    text += f" (confidence: {confidence})"
                self._json(200, {"model": body["model"], "choices": [{"message": {"content": text}}],
                                 "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 7}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gate(self, name: str) -> threading.Event:
        """A gate that ``POST /agent`` calls with ``input.gate == name`` wait on until it is opened."""
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def open_gate(self, name: str) -> None:
        self.gate(name).set()

    def call_count(self, key: str) -> int:
        with self.lock:
            return self.calls[key]

    def close(self) -> None:
        self.httpd.shutdown()


class FakeMailServer:
    """A real SMTP server (aiosmtpd) on a free loopback port that refuses the first ``failures`` messages
    with a transient error (451), then accepts and keeps them in ``messages``."""

    def __init__(self, failures: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self.failures = failures
        self.attempts = 0
        self.messages: list[Any] = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                server.attempts += 1
                if server.attempts <= server.failures:
                    return "451 4.3.0 try again later"
                server.messages.append(envelope)
                return "250 OK"

        with socket.socket() as probe:  # a free port (the controller checks it can connect to the one given)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
