"""The agent registry: agents.yaml (and any further files in AGENTS_FILE, separated by ':'; later files
override earlier ones by name). ``${VAR}`` and ``${VAR:-default}`` in values come from the environment."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from agents.base import Agent, AgentSpec
from agents.errors import AgentConfigError, UnknownAgent
from agents.kinds.http import HttpAgent
from agents.kinds.llm import LlmAgent
from agents.kinds.python import PythonAgent

KINDS: dict[str, type[Agent]] = {cls.kind: cls for cls in (LlmAgent, HttpAgent, PythonAgent)}
_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _spec(name: str, raw: dict[str, Any]) -> AgentSpec:
    raw = dict(_expand(raw))
    kind = raw.pop("kind", None)
    if kind not in KINDS:
        raise AgentConfigError(f"agent {name!r}: kind must be one of {sorted(KINDS)}, not {kind!r}")
    timeout = float(raw.pop("timeout", settings.ORCH_STEP_TIMEOUT_DEFAULT))
    return AgentSpec(
        name=name,
        kind=kind,
        description=str(raw.pop("description", "")),
        capabilities=tuple(raw.pop("capabilities", ())),
        queue=str(raw.pop("queue", "agents")),
        timeout=min(timeout, settings.ORCH_STEP_TIMEOUT_MAX),
        options=raw,
    )


@cache
def specs() -> dict[str, AgentSpec]:
    found: dict[str, AgentSpec] = {}
    for path in str(settings.AGENTS_FILE).split(os.pathsep):
        data = yaml.safe_load(Path(path).read_text()) or {}
        for name, raw in (data.get("agents") or {}).items():
            found[name] = _spec(name, raw or {})
    return found


@cache
def agent(name: str) -> Agent:
    try:
        spec = specs()[name]
    except KeyError:
        raise UnknownAgent(f"no agent named {name!r}") from None
    return KINDS[spec.kind](spec)
