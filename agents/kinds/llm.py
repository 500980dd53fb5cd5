"""``llm`` agents: a role (system prompt) on a chat model.

Providers: ``openai`` (any OpenAI-compatible chat-completions API: OpenAI, Ollama, vLLM, LM Studio, by base
URL), ``anthropic`` (the Messages API) and ``offline`` (deterministic, no network, for demos and tests; its
output says it is offline). Both network providers stream by default (``stream: false`` turns it off):
text reaches ``call.on_chunk`` as it arrives.

Per-agent options: provider, model, base_url, api_key_env (the name of the environment variable holding
the key: keys never come from a plan), system_prompt, temperature, max_tokens (always sent, so an
estimate is a real bound), stream, tools (``[{name, description, parameters: JSON schema}]``) and
tool_choice. Tool calls the model asks for come back in the output as
``tool_calls: [{id, name, arguments}]``; running them is up to the plan.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings
from httpx_sse import EventSource, ServerSentEvent

from agents import telemetry
from agents.base import Agent, AgentCall, AgentResult, AgentSpec, Usage
from agents.egress import KeptClient, ssl_context
from agents.errors import (
    AgentBadOutput,
    AgentConfigError,
    AgentError,
    AgentTimeout,
    TransientAgentError,
)
from agents.kinds.transport import raise_for_status, request_errors
from agents.tokens import max_tokens_for

PROVIDERS = ("openai", "anthropic", "offline")
ANTHROPIC_VERSION = "2023-06-01"
# Provider calls keep their client and connections (one per thread); each passes its own timeout.
_client = KeptClient(lambda: httpx.Client(verify=ssl_context(), timeout=60))


@dataclass
class Completion:
    text: str
    usage: Usage
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """One chat request, provider-neutral."""

    system: str
    user: str
    model: str
    max_tokens: int
    temperature: float | None
    json_mode: bool
    tools: list[dict[str, Any]]
    tool_choice: Any
    stream: bool


def user_message(call_input: dict[str, Any], context: dict[str, Any]) -> str:
    prompt = call_input.get("prompt")
    user = prompt if isinstance(prompt, str) else json.dumps(call_input, sort_keys=True)
    if context:
        user += "\n\nResults of earlier steps:\n" + json.dumps(context, sort_keys=True, default=str)
    return user


def build_messages(system_prompt: str, call: AgentCall) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user_message(call.input, call.context)}]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the usual 4-characters-a-token estimate, for the offline provider


# Experiments (issue 14) need a quality a test can set: a ``[quality=N]`` marker in an agent's system prompt
# (a variant's prompt, say) is repeated in the offline answer, and the offline judge (a prompt asking for
# JUDGE_REQUEST) scores an answer N -1..+1 (from the prompt's digest), or 7 -1..+1 without a marker.
QUALITY_MARK = re.compile(r"\[quality=(\d+(?:\.\d+)?)\]")
JUDGE_REQUEST = "SCORE FROM 0 TO 10"
OFFLINE_QUALITY = 7.0


def offline_judge(prompt: str, digest: str) -> dict[str, Any]:
    found = QUALITY_MARK.search(prompt.split(JUDGE_REQUEST, 1)[0])
    base = float(found.group(1)) if found else OFFLINE_QUALITY
    score = min(10.0, max(0.0, base + int(digest, 16) % 3 - 1))
    return {"score": score, "reason": f"offline judge: quality {base:g}"}


def offline_complete(messages: list[dict[str, str]], *, model: str, json_mode: bool, latency_ms: int,
                     role: str) -> Completion:
    """Deterministic: the same messages give the same text. Sleeps ``latency_ms`` to look like a model."""
    if latency_ms:
        time.sleep(latency_ms / 1000)
    prompt = messages[-1]["content"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    if JUDGE_REQUEST in prompt:
        text = json.dumps(offline_judge(prompt, digest))
    elif json_mode:
        text = json.dumps(offline_plan(prompt))
    else:
        first_line = prompt.strip().splitlines()[0][:120] if prompt.strip() else ""
        text = f"[offline {model}] {role}: {first_line} (#{digest})"
        if role == "query_analyst":
            text += f"\nComplexity: {offline_complexity(first_line)}"
        if quality := QUALITY_MARK.search(system):
            text += f" {quality.group(0)}"
    prompt_tokens = sum(_tokens(m["content"]) for m in messages)
    return Completion(text=text, usage=Usage(prompt_tokens, _tokens(text), model=f"offline/{model}"))


COMPLEX_WORDS = ("compare", "and", "versus", "vs", "trade-off", "tradeoffs", "pros", "cons", "why")


def offline_complexity(query: str) -> str:
    """The offline query analyst's verdict (workflows/research.yaml branches on it), deterministic:
    ``complex`` when the query has more than 12 words or any of COMPLEX_WORDS, else ``simple``."""
    words = [w.strip(".,;:?!'\"()").lower() for w in query.split()]
    return "complex" if len(words) > 12 or any(w in COMPLEX_WORDS for w in words) else "simple"


# A planner asked to extend a running plan after a step (orchestrator/planning.py replan_input, issue 10).
REPLAN_MARK = re.compile(r"EXTEND THE PLAN AFTER STEP: ([a-z][a-z0-9_-]*)")


def offline_plan(prompt: str) -> dict[str, Any]:
    """The offline planner's answer: analysis, then search and reasoning in parallel, then synthesis. Asked
    to extend a plan after step KEY: one reasoning step, ``KEY-review``, that reviews its result."""
    request = prompt.split("REQUEST:", 1)[-1].strip().splitlines()[0] if "REQUEST:" in prompt else prompt[:200]
    if replan := REPLAN_MARK.search(prompt):
        after = replan.group(1)
        return {"steps": [{"key": f"{after}-review"[:100], "agent": "reasoning_agent",
                           "input": {"prompt": f"Review the result of {after} for: {request}"}}]}
    return {
        "steps": [
            {"key": "analyse", "agent": "query_analyst", "input": {"prompt": f"Analyse: {request}"}},
            {"key": "search", "agent": "search_agent", "input": {"prompt": f"Search for: {request}"},
             "depends_on": ["analyse"]},
            {"key": "reason", "agent": "reasoning_agent", "input": {"prompt": f"Reason about: {request}"},
             "depends_on": ["analyse"]},
            {"key": "synthesise", "agent": "synthesis_agent", "input": {"prompt": f"Answer: {request}"},
             "depends_on": ["search", "reason"]},
        ]
    }


def _events(response: httpx.Response, deadline: float, agent: str) -> Iterator[ServerSentEvent]:
    """The SSE events of a streamed response, until the call's deadline (then AgentTimeout)."""
    for event in EventSource(response).iter_sse():
        if time.monotonic() > deadline:
            raise AgentTimeout(f"agent {agent!r} was still streaming at its timeout")
        yield event


def _json(data: str, agent: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise AgentBadOutput(f"agent {agent!r}: a stream event is not JSON: {data[:200]}") from exc
    if not isinstance(value, dict):
        raise AgentBadOutput(f"agent {agent!r}: a stream event is not an object: {data[:200]}")
    return value


def _arguments(raw: str | dict[str, Any], agent: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        raise AgentBadOutput(f"agent {agent!r}: tool call arguments are not JSON: {raw[:200]}") from exc
    return value if isinstance(value, dict) else {"value": value}


# --- OpenAI-compatible chat completions -----------------------------------------------------------------


def _openai_body(req: Request) -> dict[str, Any]:
    messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
        {"role": "user", "content": req.user}]
    body: dict[str, Any] = {"model": req.model, "messages": messages, "max_tokens": req.max_tokens}
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.json_mode:
        body["response_format"] = {"type": "json_object"}
    if req.tools:
        body["tools"] = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                            "parameters": t.get("parameters", {"type": "object"})}}
                         for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def openai_complete(req: Request, *, base_url: str, api_key: str, call: AgentCall, agent: str) -> Completion:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url.rstrip('/')}/chat/completions"
    deadline = time.monotonic() + call.timeout
    with request_errors(agent), _client.get().stream("POST", url, json=_openai_body(req), headers=headers,
                                                      timeout=call.timeout) as response:
        raise_for_status(agent, response)
        if req.stream and response.headers.get("content-type", "").startswith("text/event-stream"):
            return _openai_stream(response, req, call, deadline, agent)
        response.read()
    try:
        data = response.json()
        message = data["choices"][0]["message"]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AgentBadOutput(f"agent {agent!r}: not a chat completion: {response.text[:200]}") from exc
    calls = [{"id": c.get("id", ""), "name": c["function"]["name"],
              "arguments": _arguments(c["function"].get("arguments", "{}"), agent)}
             for c in message.get("tool_calls") or []]
    text = message.get("content") or ""
    call.chunk(text)
    return Completion(text, Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                                  model=str(data.get("model", req.model))), calls)


def _openai_stream(response: httpx.Response, req: Request, call: AgentCall, deadline: float,
                   agent: str) -> Completion:
    parts: list[str] = []
    tools: dict[int, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    model = req.model
    for event in _events(response, deadline, agent):
        if event.data.strip() == "[DONE]":
            break
        chunk = _json(event.data, agent)
        if "error" in chunk:
            raise TransientAgentError(f"agent {agent!r}: the stream failed: {chunk['error']}",
                                      code="agent.server_error")
        model = str(chunk.get("model") or model)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                parts.append(delta["content"])
                call.chunk(delta["content"])
            for piece in delta.get("tool_calls") or []:
                slot = tools.setdefault(int(piece.get("index", 0)), {"id": "", "name": "", "arguments": ""})
                slot["id"] = piece.get("id") or slot["id"]
                function = piece.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
    text = "".join(parts)
    calls = [{**slot, "arguments": _arguments(slot["arguments"], agent)} for _, slot in sorted(tools.items())]
    prompt_tokens = int(usage.get("prompt_tokens", 0)) or _tokens(req.system + req.user)
    completion_tokens = int(usage.get("completion_tokens", 0)) or _tokens(text)
    return Completion(text, Usage(prompt_tokens, completion_tokens, model=model), calls)


# --- Anthropic Messages API -----------------------------------------------------------------------------


def _anthropic_body(req: Request) -> dict[str, Any]:
    user = req.user + ("\n\nAnswer with one JSON object only." if req.json_mode else "")
    body: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens,
                            "messages": [{"role": "user", "content": user}]}
    if req.system:
        body["system"] = req.system
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.tools:
        body["tools"] = [{"name": t["name"], "description": t.get("description", ""),
                          "input_schema": t.get("parameters", {"type": "object"})} for t in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
    if req.stream:
        body["stream"] = True
    return body


def _anthropic_error(agent: str, error: dict[str, Any]) -> AgentError:
    kind, message = str(error.get("type", "")), str(error.get("message", ""))
    if kind in ("overloaded_error", "api_error", "rate_limit_error", "timeout_error"):
        return TransientAgentError(f"agent {agent!r}: {kind}: {message}", code="agent.server_error")
    return AgentError(f"agent {agent!r}: {kind}: {message}", code="agent.rejected")


def anthropic_complete(req: Request, *, base_url: str, api_key: str, call: AgentCall, agent: str) -> Completion:
    headers = {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": api_key} if api_key else {})}
    url = f"{base_url.rstrip('/')}/messages"
    deadline = time.monotonic() + call.timeout
    with request_errors(agent), _client.get().stream("POST", url, json=_anthropic_body(req), headers=headers,
                                                      timeout=call.timeout) as response:
        raise_for_status(agent, response)
        if req.stream and response.headers.get("content-type", "").startswith("text/event-stream"):
            return _anthropic_stream(response, req, call, deadline, agent)
        response.read()
    try:
        data = response.json()
        blocks = data["content"]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentBadOutput(f"agent {agent!r}: not a Messages API answer: {response.text[:200]}") from exc
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [{"id": b.get("id", ""), "name": b["name"], "arguments": _arguments(b.get("input") or {}, agent)}
             for b in blocks if b.get("type") == "tool_use"]
    call.chunk(text)
    return Completion(text, Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)),
                                  model=str(data.get("model", req.model))), calls)


def _anthropic_stream(response: httpx.Response, req: Request, call: AgentCall, deadline: float,
                      agent: str) -> Completion:
    parts: list[str] = []
    blocks: dict[int, dict[str, Any]] = {}
    input_tokens = output_tokens = 0
    model = req.model
    for event in _events(response, deadline, agent):
        data = _json(event.data, agent) if event.data else {}
        kind = data.get("type", event.event)
        if kind == "message_start":
            message = data.get("message") or {}
            model = str(message.get("model") or model)
            input_tokens = int((message.get("usage") or {}).get("input_tokens", 0))
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            blocks[int(data.get("index", 0))] = {**block, "partial": ""}
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                parts.append(delta.get("text", ""))
                call.chunk(delta.get("text", ""))
            elif delta.get("type") == "input_json_delta":
                blocks.setdefault(int(data.get("index", 0)), {"partial": ""})["partial"] += delta.get(
                    "partial_json", "")
        elif kind == "message_delta":
            usage = data.get("usage") or {}
            output_tokens = int(usage.get("output_tokens", output_tokens))
            input_tokens = int(usage.get("input_tokens") or input_tokens)
        elif kind == "error":
            raise _anthropic_error(agent, data.get("error") or {})
        elif kind == "message_stop":
            break
    calls = [{"id": b.get("id", ""), "name": b.get("name", ""), "arguments": _arguments(b["partial"], agent)}
             for _, b in sorted(blocks.items()) if b.get("type") == "tool_use"]
    return Completion("".join(parts), Usage(input_tokens, output_tokens, model=model), calls)


# --- the agent ------------------------------------------------------------------------------------------


class LlmAgent(Agent):
    kind = "llm"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        options = spec.options
        self.provider = options.get("provider") or settings.LLM_PROVIDER
        if self.provider not in PROVIDERS:
            raise AgentConfigError(f"agent {spec.name!r}: unknown provider {self.provider!r}")
        anthropic = self.provider == "anthropic"
        self.model = str(options.get("model") or settings.LLM_MODEL
                         or (settings.ANTHROPIC_MODEL if anthropic else settings.OPENAI_MODEL_DEFAULT))
        self.base_url = options.get("base_url") or (settings.ANTHROPIC_BASE_URL if anthropic
                                                    else settings.LLM_BASE_URL)
        self.key_env = options.get("api_key_env") or ("ANTHROPIC_API_KEY" if anthropic else "")
        self.system_prompt = str(options.get("system_prompt", ""))
        self.temperature = options.get("temperature")
        self.max_tokens = int(options.get("max_tokens") or settings.LLM_MAX_TOKENS)
        self.stream = bool(options.get("stream", True))
        self.tools = list(options.get("tools") or [])
        self.tool_choice = options.get("tool_choice")

    def api_key(self) -> str:
        """Read at call time, from the environment only."""
        return os.environ.get(self.key_env, "") if self.key_env else settings.LLM_API_KEY

    def prompt_tokens_bound(self, call_input: dict[str, Any], context: dict[str, Any]) -> int:
        """A conservative bound of the prompt's tokens: 3 characters a token (real tokenizers average
        about 4 for English), plus room for the role markers and the tool definitions."""
        chars = len(self.system_prompt) + len(user_message(call_input, context)) + len(json.dumps(self.tools))
        return math.ceil(chars / 3) + 16

    def max_tokens_for(self, call: AgentCall) -> int:
        """This call's ``max_tokens``: the agent's, capped by what the plan's budget has left."""
        return max_tokens_for(self.max_tokens, tokens_left=call.tokens_left,
                              prompt_tokens=self.prompt_tokens_bound(call.input, call.context))

    def run(self, call: AgentCall) -> AgentResult:
        with telemetry.llm_span(provider=self.provider, model=self.model, max_tokens=self.max_tokens) as span:
            result = self._run(call)
            telemetry.record_usage(span, result.usage)
            return result

    def _run(self, call: AgentCall) -> AgentResult:
        json_mode = call.input.get("response_format") == "json"
        # A variant or a routing decision may override the model and the system prompt (issue 14).
        model = call.model or self.model
        system_prompt = self.system_prompt if call.system_prompt is None else call.system_prompt
        if self.provider == "offline":
            latency = int(self.spec.options.get("latency_ms", settings.OFFLINE_LATENCY_MS))
            completion = offline_complete(build_messages(system_prompt, call), model=model,
                                          json_mode=json_mode, latency_ms=latency, role=self.spec.name)
            call.chunk(completion.text)
        else:
            req = Request(system_prompt, user_message(call.input, call.context), model, self.max_tokens_for(call),
                          self.temperature, json_mode, self.tools, self.tool_choice, self.stream)
            complete = anthropic_complete if self.provider == "anthropic" else openai_complete
            completion = complete(req, base_url=self.base_url, api_key=self.api_key(), call=call,
                                  agent=self.spec.name)
        output: dict[str, Any] = {"text": completion.text, "model": completion.usage.model}
        if completion.tool_calls:
            output["tool_calls"] = completion.tool_calls
        return AgentResult(output=output, usage=completion.usage)
