"""The agent registry: agents.yaml (and any further files in AGENTS_FILE, separated by ':'; later files
override earlier ones by name). ``${VAR}`` and ``${VAR:-default}`` in values come from the environment.

Besides ``agents:``, a file may hold ``prices:`` (model -> USD per million prompt / completion tokens)
and ``rate_limits:`` (name -> requests_per_minute, tokens_per_minute, burst), merged the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from agents import cost_options
from agents.base import Agent, AgentSpec
from agents.errors import AgentConfigError, UnknownAgent
from agents.kinds.http import HttpAgent
from agents.kinds.llm import LlmAgent
from agents.kinds.mcp import McpAgent
from agents.kinds.python import PythonAgent

KINDS: dict[str, type[Agent]] = {cls.kind: cls for cls in (LlmAgent, HttpAgent, PythonAgent, McpAgent)}
_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    prompt: Decimal
    completion: Decimal


@dataclass(frozen=True)
class RateLimit:
    """A limit shared by every worker: requests and tokens per minute (None: no limit of that kind).

    ``burst`` is how many requests may go at once after a quiet spell (default 1: evenly spaced); tokens
    may burst to a tenth of a minute's worth."""

    name: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst: int = 1


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.pop(key, None)
    return None if value in (None, "") else int(value)


def _spec(name: str, raw: dict[str, Any]) -> AgentSpec:
    raw = dict(_expand(raw))
    kind = raw.pop("kind", None)
    if kind not in KINDS:
        raise AgentConfigError(f"agent {name!r}: kind must be one of {sorted(KINDS)}, not {kind!r}")
    timeout = float(raw.pop("timeout", settings.ORCH_STEP_TIMEOUT_DEFAULT))
    rate_limit = raw.pop("rate_limit", None)
    if rate_limit is None and kind == "llm":
        rate_limit = raw.get("provider") or settings.LLM_PROVIDER
    return AgentSpec(
        name=name,
        kind=kind,
        description=str(raw.pop("description", "")),
        capabilities=tuple(raw.pop("capabilities", ())),
        queue=str(raw.pop("queue", "agents")),
        timeout=min(timeout, settings.ORCH_STEP_TIMEOUT_MAX),
        fallback=raw.pop("fallback", None) or None,
        max_concurrency=_optional_int(raw, "max_concurrency"),
        rate_limit=str(rate_limit) if rate_limit else None,
        retries=_optional_int(raw, "retries"),
        breaker={k: float(v) for k, v in (raw.pop("breaker", None) or {}).items()},
        options=raw,
    )


def _files() -> list[dict[str, Any]]:
    return [yaml.safe_load(Path(path).read_text()) or {} for path in str(settings.AGENTS_FILE).split(os.pathsep)]


@cache
def specs() -> dict[str, AgentSpec]:
    found: dict[str, AgentSpec] = {}
    for data in _files():
        for name, raw in (data.get("agents") or {}).items():
            found[name] = _spec(name, raw or {})
    for spec in found.values():
        if spec.fallback is not None and spec.fallback not in found:
            raise AgentConfigError(f"agent {spec.name!r}: its fallback {spec.fallback!r} is not an agent")
        cost_options.parse(spec)  # issue 14's keys (cache, side_effects, cheap_model, route): agents/cost_options.py
    return found


@cache
def prices() -> dict[str, Price]:
    found: dict[str, Price] = {}
    for data in _files():
        for model, raw in (_expand(data.get("prices")) or {}).items():
            found[str(model)] = Price(Decimal(str(raw.get("prompt", 0))), Decimal(str(raw.get("completion", 0))))
    return found


@cache
def rate_limits() -> dict[str, RateLimit]:
    found: dict[str, RateLimit] = {}
    for data in _files():
        for name, raw in (_expand(data.get("rate_limits")) or {}).items():
            raw = dict(raw or {})
            found[name] = RateLimit(name, _optional_int(raw, "requests_per_minute"),
                                    _optional_int(raw, "tokens_per_minute"), int(raw.get("burst", 1)))
    return found


@cache
def agent(name: str) -> Agent:
    try:
        spec = specs()[name]
    except KeyError:
        raise UnknownAgent(f"no agent named {name!r}") from None
    return KINDS[spec.kind](spec)


def reload() -> None:
    """Forget everything read from AGENTS_FILE (tests that layer files, a changed registry)."""
    for cached in (specs, prices, rate_limits, agent):
        cached.cache_clear()
