"""Real local servers for the agents tests: an OpenAI-compatible chat API and the Anthropic Messages
API (both streaming), an agent service (JSON, SSE, NDJSON, redirects, an on/off switchable failure) and
an MCP server over streamable HTTP (uvicorn in a thread; the stdio one is ``mcp_tool_server.py``).

Faults are injected by words in the prompt, so they work the same from a test and from a worker
process: ``key:K`` names a counter; ``fail:429*2`` answers 429 to the first two calls of that key
(``retry_after:1`` adds the header); ``slow:2`` sleeps before answering; ``tool:NAME`` asks for a tool call.
The LLM fakes answer ``ANSWER`` in ``len(ANSWER.split())`` chunks, and log every usage they report.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn

ANSWER = "alpha beta gamma delta epsilon"
HERE = Path(__file__).resolve().parent


def _directives(prompt: str) -> dict[str, str]:
    return dict(word.split(":", 1) for word in prompt.split() if ":" in word and not word.startswith("http"))


class AgentFakes:
    def __init__(self, directory: Path) -> None:
        self.calls: Counter[str] = Counter()
        self.usage: list[tuple[str, int, int]] = []  # (model, prompt_tokens, completion_tokens) answered
        self.modes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.mcp_url = self._start_mcp()
        self.agents_file = directory / "agents.fakes.yaml"
        self.agents_file.write_text(self._agents_yaml())

    # --- control ------------------------------------------------------------------------------------

    def count(self, key: str) -> int:
        """Calls seen under ``key`` (a prompt's ``key:K`` word, with or without ``key:``)."""
        with self.lock:
            return self.calls[key.removeprefix("key:")]

    def usage_of(self, model: str) -> list[tuple[str, int, int]]:
        with self.lock:
            return [u for u in self.usage if u[0] == model]

    def close(self) -> None:
        self.httpd.shutdown()
        self.mcp_server.should_exit = True

    def _start_mcp(self) -> str:
        from tests.agents.mcp_tool_server import app

        config = uvicorn.Config(app(), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.mcp_server = uvicorn.Server(config)
        threading.Thread(target=self.mcp_server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.mcp_server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake MCP server did not start")
            time.sleep(0.02)
        port = self.mcp_server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/mcp"

    def _agents_yaml(self) -> str:
        return f"""
prices:
  fake-gpt: {{prompt: 2.5, completion: 10}}
  fake-claude: {{prompt: 3, completion: 15}}
rate_limits:
  fake-openai: {{requests_per_minute: 6000, tokens_per_minute: 10000000}}
agents:
  gpt:
    kind: llm
    provider: openai
    base_url: {self.url}/v1
    model: fake-gpt
    rate_limit: fake-openai
    system_prompt: You are a test.
    max_tokens: 50
    retries: 3
  gpt_plain:
    kind: llm
    provider: openai
    base_url: {self.url}/v1
    model: fake-gpt
    stream: false
    tools:
      - {{name: lookup, description: Looks a word up,
         parameters: {{type: object, properties: {{word: {{type: string}}}}}}}}
  claude:
    kind: llm
    provider: anthropic
    base_url: {self.url}/anthropic/v1
    api_key_env: FAKE_ANTHROPIC_KEY
    model: fake-claude
    max_tokens: 50
    tools: [{{name: lookup, description: Looks a word up, parameters: {{type: object}}}}]
  service:
    kind: http
    url: {self.url}/svc/json
    allow_private: true
    header_env: {{X-Service-Token: FAKE_SERVICE_TOKEN}}
  service_sse:
    kind: http
    url: {self.url}/svc/sse
    allow_private: true
  service_ndjson:
    kind: http
    url: {self.url}/svc/ndjson
    allow_private: true
  service_redirect:
    kind: http
    url: {self.url}/svc/redirect
    allow_private: [127.0.0.1/32]
    allowed_hosts: [localhost, 169.254.169.254, 10.0.0.7]
  service_guarded:
    kind: http
    url: {self.url}/svc/json
  flaky:
    kind: http
    url: {self.url}/svc/flaky
    allow_private: true
    retries: 1
    breaker: {{failures: 4, reset_after: 4}}  # long enough for a subprocess on a loaded machine
    fallback: flaky_backup
  flaky_backup:
    kind: python
    callable: agents.builtin.echo
  mcp_stdio:
    kind: mcp
    command: {sys.executable}
    args: [{HERE / "mcp_tool_server.py"}]
    tool: add
    timeout: 30
  mcp_http:
    kind: mcp
    url: {self.mcp_url}
    tool: shout
    timeout: 30
  mcp_failing:
    kind: mcp
    url: {self.mcp_url}
    tool: explode
"""

    # --- the HTTP server --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fakes = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(body).encode(), "application/json", headers)

            def _stream(self, kind: str, pieces: list[str], delay: float = 0.01) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Connection", "close")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(piece.encode())
                    self.wfile.flush()
                    time.sleep(delay)
                self.close_connection = True

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.startswith("/svc/"):
                    self._service(self.path.removeprefix("/svc/"), body)
                    return
                prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
                prompt += "\n" + str(body.get("system", ""))
                if self._injected_fault(prompt):
                    return
                if self.path == "/v1/chat/completions":
                    self._openai(body, prompt)
                elif self.path == "/anthropic/v1/messages":
                    self._anthropic(body, prompt)
                else:
                    self._json(404, {"error": "not found"})

            def _injected_fault(self, prompt: str) -> bool:
                words = _directives(prompt)
                key = words.get("key", "")
                with fakes.lock:
                    fakes.calls[key] += 1
                    seen = fakes.calls[key]
                time.sleep(float(words.get("slow", 0)))
                if "fail" in words:
                    status, times = words["fail"].split("*")
                    if seen <= int(times):
                        headers = {"Retry-After": words["retry_after"]} if "retry_after" in words else {}
                        self._json(int(status), {"error": {"message": f"injected {status}"}}, headers)
                        return True
                return False

            def _log_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
                with fakes.lock:
                    fakes.usage.append((model, prompt_tokens, completion_tokens))

            def _openai(self, body: dict[str, Any], prompt: str) -> None:
                model, words = body["model"], ANSWER.split()
                prompt_tokens, completion_tokens = len(prompt) // 4 + 3, len(words)
                tool = _directives(prompt).get("tool")
                self._log_usage(model, prompt_tokens, completion_tokens)
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
                tool_calls: list[dict[str, Any]] = [{"id": "call_1", "type": "function",
                               "function": {"name": tool, "arguments": json.dumps({"word": "alpha"})}}] if tool else []
                if not body.get("stream"):
                    message = {"role": "assistant", "content": None if tool else ANSWER,
                               **({"tool_calls": tool_calls} if tool else {})}
                    self._json(200, {"model": model, "choices": [{"message": message}], "usage": usage})
                    return
                texts = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
                chunks: list[dict[str, Any]] = [{"model": model, "choices": [{"index": 0, "delta": {"content": t}}]}
                                                for t in texts]
                if tool:
                    arguments = tool_calls[0]["function"]["arguments"]
                    chunks.append({"model": model, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "id": "call_1", "function": {"name": tool, "arguments": arguments[:5]}}]}}]})
                    chunks.append({"model": model, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": 0, "function": {"arguments": arguments[5:]}}]}}]})
                chunks.append({"model": model, "choices": [], "usage": usage})
                self._stream("text/event-stream", [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"])

            def _anthropic(self, body: dict[str, Any], prompt: str) -> None:
                if self.headers.get("anthropic-version") is None or body.get("max_tokens") is None:
                    self._json(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                               "message": "missing version or max_tokens"}})
                    return
                model, words = body["model"], ANSWER.split()
                prompt_tokens, completion_tokens = len(prompt) // 4 + 5, len(words)
                self._log_usage(model, prompt_tokens, completion_tokens)
                tool = _directives(prompt).get("tool")
                events: list[tuple[str, dict[str, Any]]] = [
                    ("message_start", {"type": "message_start", "message": {
                        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                        "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                    ("ping", {"type": "ping"}),
                ]
                events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": w + (" " if i < len(words) - 1 else "")}})
                           for i, w in enumerate(words)]
                events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
                if tool:
                    events += [
                        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                            "type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}}),
                        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
                            "type": "input_json_delta", "partial_json": '{"word": '}}),
                        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
                            "type": "input_json_delta", "partial_json": '"alpha"}'}}),
                        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
                    ]
                events += [
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                       "usage": {"output_tokens": completion_tokens}}),
                    ("message_stop", {"type": "message_stop"}),
                ]
                self._stream("text/event-stream", [f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events])

            def _service(self, name: str, body: dict[str, Any]) -> None:
                step_input = body.get("input") or {}
                with fakes.lock:
                    fakes.calls[f"svc/{name}"] += 1
                if name == "json":
                    self._json(200, {"echo": step_input, "token": self.headers.get("X-Service-Token", "")})
                elif name == "sse":
                    self._stream("text/event-stream", ["event: chunk\ndata: one \n\n", "data: two \n\n",
                                                       "event: chunk\ndata: three\n\n",
                                                       f"event: result\ndata: {json.dumps({'n': 3})}\n\n"])
                elif name == "ndjson":
                    self._stream("application/x-ndjson", ['{"chunk": "one "}\n', '{"chunk": "two"}\n',
                                                          '{"output": {"n": 2}}\n'])
                elif name == "redirect":
                    self._send(307, b"", "text/plain", {"Location": str(step_input.get("to", "/svc/json"))})
                elif name == "flaky":
                    status = fakes.modes.get("flaky", 200)
                    self._json(status, {"ok": status == 200})
                else:
                    self._json(404, {"error": "not found"})

        return Handler
