"""``llm`` agents: a role (system prompt) on a chat model.

Providers: ``openai`` (any OpenAI-compatible chat-completions API: OpenAI, Ollama, vLLM, LM Studio, by base
URL) and ``offline`` (deterministic, no network, for demos and tests; its output says it is offline).
Per-agent options: provider, model, base_url, api_key_env, system_prompt, temperature, max_tokens.
Keys come from the environment, never from a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from agents.base import Agent, AgentCall, AgentResult, AgentSpec, Usage
from agents.errors import AgentBadOutput, AgentConfigError
from agents.kinds.transport import raise_for_status, request_errors


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


def build_messages(system_prompt: str, call: AgentCall) -> list[dict[str, str]]:
    prompt = call.input.get("prompt")
    user = prompt if isinstance(prompt, str) else json.dumps(call.input, sort_keys=True)
    if call.context:
        user += "\n\nResults of earlier steps:\n" + json.dumps(call.context, sort_keys=True, default=str)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the usual 4-characters-a-token estimate, for the offline provider


def offline_complete(messages: list[dict[str, str]], *, model: str, json_mode: bool, latency_ms: int,
                     role: str) -> Completion:
    """Deterministic: the same messages give the same text. Sleeps ``latency_ms`` to look like a model."""
    if latency_ms:
        time.sleep(latency_ms / 1000)
    prompt = messages[-1]["content"]
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    if json_mode:
        text = json.dumps(offline_plan(prompt))
    else:
        first_line = prompt.strip().splitlines()[0][:120] if prompt.strip() else ""
        text = f"[offline {model}] {role}: {first_line} (#{digest})"
    prompt_tokens = sum(_tokens(m["content"]) for m in messages)
    return Completion(text=text, usage=Usage(prompt_tokens, _tokens(text), model=f"offline/{model}"))


def offline_plan(prompt: str) -> dict[str, Any]:
    """The offline planner's answer: analysis, then search and reasoning in parallel, then synthesis."""
    request = prompt.split("REQUEST:", 1)[-1].strip().splitlines()[0] if "REQUEST:" in prompt else prompt[:200]
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


def openai_complete(messages: list[dict[str, str]], *, base_url: str, api_key: str, model: str,
                    json_mode: bool, timeout: float, agent: str, temperature: float | None,
                    max_tokens: int | None) -> Completion:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with request_errors(agent):
        response = httpx.post(f"{base_url.rstrip('/')}/chat/completions", json=body, headers=headers,
                              timeout=timeout)
    raise_for_status(agent, response)
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AgentBadOutput(f"agent {agent!r}: not a chat completion: {response.text[:200]}") from exc
    return Completion(text, Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                                  model=str(data.get("model", model))))


class LlmAgent(Agent):
    kind = "llm"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        options = spec.options
        self.provider = options.get("provider") or settings.LLM_PROVIDER
        if self.provider not in ("openai", "offline"):
            raise AgentConfigError(f"agent {spec.name!r}: unknown provider {self.provider!r}")
        self.model = options.get("model") or settings.LLM_MODEL
        self.base_url = options.get("base_url") or settings.LLM_BASE_URL
        key_env = options.get("api_key_env")
        self.api_key = os.environ.get(key_env, "") if key_env else settings.LLM_API_KEY
        self.system_prompt = options.get("system_prompt", "")
        self.temperature = options.get("temperature")
        self.max_tokens = options.get("max_tokens")

    def run(self, call: AgentCall) -> AgentResult:
        messages = build_messages(self.system_prompt, call)
        json_mode = call.input.get("response_format") == "json"
        if self.provider == "offline":
            latency = int(self.spec.options.get("latency_ms", settings.OFFLINE_LATENCY_MS))
            completion = offline_complete(messages, model=self.model, json_mode=json_mode, latency_ms=latency,
                                          role=self.spec.name)
        else:
            completion = openai_complete(messages, base_url=self.base_url, api_key=self.api_key,
                                         model=self.model, json_mode=json_mode, timeout=call.timeout,
                                         agent=self.spec.name, temperature=self.temperature,
                                         max_tokens=self.max_tokens)
        return AgentResult(output={"text": completion.text, "model": completion.usage.model},
                           usage=completion.usage)
