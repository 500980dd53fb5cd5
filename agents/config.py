"""The shape of agents.yaml, validated whole when the process starts (and by ``manage.py check``): one
pydantic model per agent kind, unknown keys refused, so a typo stops startup with a clear message instead
of being ignored. ``${VAR}`` / ``${VAR:-default}`` are expanded before validation (agents/registry.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from agents.cost_options import CacheOptions, RouteOptions

Risk = Literal["low", "medium", "high"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BreakerConfigModel(Strict):
    failures: PositiveInt | None = None
    reset_after: PositiveFloat | None = None


class AgentModel(Strict):
    """What every kind shares. Everything but these common keys is kind-specific (``options``)."""

    description: str = ""
    capabilities: list[str] = Field(default_factory=list)
    queue: str = "agents"
    timeout: PositiveFloat | None = None  # one try; default ORCH_STEP_TIMEOUT_DEFAULT
    deadline: PositiveFloat | None = None  # a whole run; default timeout x tries + 60
    fallback: str | None = None
    max_concurrency: PositiveInt | None = None
    rate_limit: str | None = None
    retries: PositiveInt | None = None
    breaker: BreakerConfigModel | None = None
    risk: Risk = "low"
    # Issue 14, the response cache (agents/cost_options.py checks how the keys combine): kept in options.
    side_effects: bool = False
    cache: CacheOptions | None = None


COST_KEYS = frozenset({"side_effects", "cache", "cheap_model", "route"})
# risk stays in options (approvals read it there), and so do the cost keys (agents/cache.py, routing.py)
COMMON = frozenset(AgentModel.model_fields) - {"risk"} - COST_KEYS


class LlmAgentModel(AgentModel):
    kind: Literal["llm"]
    provider: Literal["openai", "anthropic", "offline"] | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    model: str | None = None
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: PositiveInt | None = None
    stream: bool = True
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: Any = None
    latency_ms: int | None = None  # the offline provider's simulated latency
    context_budget: PositiveInt | None = None  # tokens of assembled context (memory); MEMORY_CONTEXT_BUDGET
    context_window: PositiveInt | None = None  # the model's window: caps context_budget + max_tokens
    # routing to a cheaper model (agents/routing.py)
    cheap_model: str | None = None
    route: RouteOptions | None = None


class EgressModel(AgentModel):
    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str] = Field(default_factory=dict)
    allow_private: bool | list[str] = False
    allowed_hosts: list[str] = Field(default_factory=list)


class HttpAgentModel(EgressModel):
    kind: Literal["http"]
    url: str


class McpAgentModel(EgressModel):
    kind: Literal["mcp"]
    tool: str
    url: str = ""
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class PythonAgentModel(AgentModel):
    kind: Literal["python"]
    callable: str
    inline: bool = False  # run in the worker's thread: no timeout enforced (agents/kinds/python.py)


class MemoryAgentModel(AgentModel):
    """A step that searches or writes its plan owner's memory (memory/actions.py). No options."""

    kind: Literal["memory"]


AgentConfig = Annotated[LlmAgentModel | HttpAgentModel | McpAgentModel | PythonAgentModel | MemoryAgentModel,
                        Field(discriminator="kind")]


class PriceModel(Strict):
    prompt: float = 0
    completion: float = 0


class RateLimitModel(Strict):
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    burst: PositiveInt = 1


class AgentsFileModel(Strict):
    agents: dict[str, AgentConfig | None] = Field(default_factory=dict)
    prices: dict[str, PriceModel] = Field(default_factory=dict)
    rate_limits: dict[str, RateLimitModel] = Field(default_factory=dict)


def describe(error: ValidationError) -> str:
    """The first problem of a validation error, where it is and what is wrong, on one line."""
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"] if not str(part).endswith("AgentModel"))
    return f"{where}: {detail['msg']}"
