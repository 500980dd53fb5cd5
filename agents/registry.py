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
from pydantic import ValidationError

from agents import cost_options
from agents.base import Agent, AgentSpec
from agents.config import COMMON, AgentModel, AgentsFileModel, LlmAgentModel, describe
from agents.errors import AgentConfigError, UnknownAgent
from agents.kinds.http import HttpAgent
from agents.kinds.llm import LlmAgent
from agents.kinds.mcp import McpAgent
from agents.kinds.memory import MemoryAgent
from agents.kinds.python import PythonAgent

KINDS: dict[str, type[Agent]] = {cls.kind: cls for cls in (LlmAgent, HttpAgent, PythonAgent, McpAgent,
                                                            MemoryAgent)}  # memory: the memory kind
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


def _spec(name: str, model: AgentModel) -> AgentSpec:
    data = model.model_dump(exclude_unset=True)
    timeout = min(model.timeout or settings.ORCH_STEP_TIMEOUT_DEFAULT, settings.ORCH_STEP_TIMEOUT_MAX)
    tries = model.retries or settings.AGENT_RETRY_ATTEMPTS
    rate_limit = model.rate_limit
    if rate_limit is None and isinstance(model, LlmAgentModel):
        rate_limit = model.provider or settings.LLM_PROVIDER
    return AgentSpec(
        name=name,
        kind=data.pop("kind"),
        description=model.description,
        capabilities=tuple(model.capabilities),
        queue=model.queue,
        timeout=timeout,
        deadline=model.deadline or timeout * tries + 60,
        fallback=model.fallback or None,
        max_concurrency=model.max_concurrency,
        rate_limit=rate_limit or None,
        retries=model.retries,
        breaker={k: float(v) for k, v in (data.get("breaker") or {}).items() if v is not None},
        options={k: v for k, v in data.items() if k not in COMMON},
    )


@cache
def _files() -> tuple[AgentsFileModel, ...]:
    """Every file of AGENTS_FILE, validated. Raises AgentConfigError naming the file and the problem."""
    files = []
    for path in str(settings.AGENTS_FILE).split(os.pathsep):
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            files.append(AgentsFileModel.model_validate(_expand(raw)))
        except OSError as exc:
            raise AgentConfigError(f"{path}: cannot be read: {exc}") from None
        except yaml.YAMLError as exc:
            raise AgentConfigError(f"{path}: not valid YAML: {exc}") from None
        except ValidationError as exc:
            raise AgentConfigError(f"{path}: {describe(exc)}") from None
    return tuple(files)


@cache
def specs() -> dict[str, AgentSpec]:
    found: dict[str, AgentSpec] = {}
    for data in _files():
        for name, model in data.agents.items():
            if model is None:
                raise AgentConfigError(f"agent {name!r}: no configuration (at least its kind)")
            found[name] = _spec(name, model)
    for spec in found.values():
        if spec.fallback is not None and spec.fallback not in found:
            raise AgentConfigError(f"agent {spec.name!r}: its fallback {spec.fallback!r} is not an agent")
        cost_options.parse(spec)  # issue 14's keys (cache, side_effects, cheap_model, route): agents/cost_options.py
    return found


@cache
def prices() -> dict[str, Price]:
    found: dict[str, Price] = {}
    for data in _files():
        for model, price in data.prices.items():
            found[str(model)] = Price(Decimal(str(price.prompt)), Decimal(str(price.completion)))
    return found


@cache
def rate_limits() -> dict[str, RateLimit]:
    found: dict[str, RateLimit] = {}
    for data in _files():
        for name, limit in data.rate_limits.items():
            found[name] = RateLimit(name, limit.requests_per_minute, limit.tokens_per_minute, limit.burst)
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
    for cached in (_files, specs, prices, rate_limits, agent):
        cached.cache_clear()
