"""The agents.yaml keys of issue 14 (response cache, routing to a cheaper model), one pydantic model.

They sit beside an agent's other keys and stay in ``AgentSpec.options``; ``parse`` validates them
(``extra="forbid"`` inside each block) when the registry loads, and again where they are used:

* ``side_effects: true``: the agent changes the world (sends mail, writes a ticket): never cached;
  ``cache`` on such an agent is a configuration error.
* ``cache: {ttl: SECONDS}``: serve an identical call (agent, model, system prompt, input, context) from
  Redis for ``ttl`` seconds, at no cost (agents/cache.py).
* ``cheap_model: NAME`` + ``route: {max_chars, complex_keywords, min_confidence}`` (``llm`` agents): a
  simple input (no longer than ``max_chars``, none of ``complex_keywords``) goes to the cheap model first;
  its failure, or an answer reporting a confidence below ``min_confidence``, escalates to the agent's own
  model (agents/routing.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.base import AgentSpec
from agents.errors import AgentConfigError

KEYS = ("side_effects", "cache", "cheap_model", "route")


class CacheOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: int = Field(gt=0, description="seconds a cached result is served")


class RouteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_chars: int = Field(default=500, gt=0, description="an input this long or shorter is simple")
    complex_keywords: tuple[str, ...] = Field(default=(), description="a word that makes an input not simple")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="escalate below this confidence")


class CostOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    side_effects: bool = False
    cache: CacheOptions | None = None
    cheap_model: str | None = None
    route: RouteOptions | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CostOptions:
        if self.cache is not None and self.side_effects:
            raise ValueError("an agent with side_effects: true is never cached: remove its cache")
        if (self.cheap_model or self.route) and self.kind != "llm":
            raise ValueError("cheap_model and route are for llm agents")
        if self.route is not None and not self.cheap_model:
            raise ValueError("route needs a cheap_model")
        return self

    @property
    def routing(self) -> RouteOptions | None:
        return (self.route or RouteOptions()) if self.cheap_model else None


def parse(spec: AgentSpec) -> CostOptions:
    """Raises AgentConfigError naming the agent and the bad key."""
    raw: dict[str, Any] = {key: spec.options[key] for key in KEYS if key in spec.options}
    try:
        return CostOptions(kind=spec.kind, **raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'agent'}: {e['msg']}" for e in exc.errors())
        raise AgentConfigError(f"agent {spec.name!r}: {problems}") from None
