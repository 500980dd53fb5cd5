"""The response cache (issue 14): an agent's result for an identical call, from Redis.

Opt-in per agent (``cache: {ttl}`` in agents.yaml) and never for an agent marked ``side_effects: true``.
The key is a SHA-256 of the owner the call is for (an answer is never shared across owners: it may draw
on the owner's memory), the agent, the model and system prompt the call would use (so a variant or a
routing override never shares an entry with another), the input and the context: an exact match, except
for the long-term memories recalled into the context (``_memory``), which grow with every plan: a repeated
question is served from the cache even though memory has grown since. A hit
costs nothing: its usage has zero tokens and ``cached: true``. The cache is an optimisation: Redis being
unavailable means a miss (logged), never a failed step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError

from agents.base import AgentCall, AgentResult, AgentSpec, Usage
from agents.cost_options import parse

log = logging.getLogger("agents")

PREFIX = "agents:cache:"
RECALLED = "_memory"  # the context key under which memory puts recalled long-term memories


def _redis() -> Redis:
    from agents.limits import _redis as shared  # one client per process, shared with the limits

    return shared()


def cache_key(spec: AgentSpec, call: AgentCall) -> str:
    """Exact match on what decides the answer; the step, plan and attempt are left out on purpose."""
    model = call.model or spec.options.get("model") or ""
    system = spec.options.get("system_prompt", "") if call.system_prompt is None else call.system_prompt
    context = {key: value for key, value in call.context.items() if key != RECALLED}
    material = json.dumps([call.owner, spec.name, model, system, call.input, context], sort_keys=True, default=str)
    return PREFIX + hashlib.sha256(material.encode()).hexdigest()


def cached_run(spec: AgentSpec, call: AgentCall, run: Callable[[AgentCall], AgentResult]) -> AgentResult:
    """``run(call)``, or its stored result when the agent caches and an identical call was answered within
    its TTL. Only successful results are stored."""
    options = parse(spec)
    if options.cache is None or options.side_effects or not settings.AGENT_CACHE_ENABLED:
        return run(call)
    key = cache_key(spec, call)
    hit = _get(key)
    if hit is not None:
        log.info("agents.cache.hit", extra={"agent": spec.name, "step_id": call.step_id})
        usage = Usage(0, 0, model=str(hit.get("model", "")), marks={"cached": True})
        return AgentResult(output=hit["output"], usage=usage, agent=str(hit.get("agent") or spec.name))
    result = run(call)
    stored = {"output": result.output, "model": result.usage.model if result.usage else "", "agent": result.agent}
    _set(key, stored, options.cache.ttl)
    return result


def _get(key: str) -> dict[str, Any] | None:
    try:
        raw = _redis().get(key)
    except RedisError as exc:
        log.warning("agents.cache.unavailable", extra={"error": str(exc)})
        return None
    return json.loads(raw) if raw else None


def _set(key: str, value: dict[str, Any], ttl: int) -> None:
    try:
        _redis().set(key, json.dumps(value, default=str), ex=ttl)
    except (RedisError, TypeError) as exc:  # TypeError: an output that is not JSON is just not cached
        log.warning("agents.cache.not_stored", extra={"error": str(exc)})


def cache_clear() -> int:
    """Forget every cached result (tests, benchmarks, a changed agent). Returns how many were removed."""
    client = _redis()
    keys = list(client.scan_iter(match=PREFIX + "*", count=1000))
    return int(client.delete(*keys)) if keys else 0
