"""The agent interface: one call in, one JSON-safe result out. Kinds live in ``agents/kinds/``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

ChunkHook = Callable[[str], None]


@dataclass(frozen=True)
class AgentSpec:
    """An agent as configured in agents.yaml: its name, kind and kind-specific options.

    ``fallback`` runs instead while this agent's circuit breaker is open; ``max_concurrency`` caps its
    calls in flight across all workers; ``rate_limit`` names a shared limit in agents.yaml's ``rate_limits``
    (an ``llm`` agent defaults to its provider's); ``retries`` overrides AGENT_RETRY_ATTEMPTS.
    """

    name: str
    kind: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    queue: str = "agents"
    timeout: float = 120.0
    fallback: str | None = None
    max_concurrency: int | None = None
    rate_limit: str | None = None
    retries: int | None = None
    deadline: float = 420.0  # seconds one run of a step may take in all: every try, wait and backoff
    breaker: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentCall:
    """What a step hands its agent. ``context`` holds the outputs of the step's dependencies by key.

    ``on_chunk``, when given, receives text as it streams in (LLM tokens, SSE / NDJSON chunks); the
    caller batches it. An agent that does not stream never calls it.

    ``timeout`` bounds one try; ``deadline`` (a ``time.monotonic()`` value, known when the step was claimed)
    bounds the whole run: waits for rate limits and concurrency slots, every try and the backoff between.
    """

    plan_id: str
    step_id: str
    step_key: str
    attempt: int
    input: dict[str, Any]
    context: dict[str, Any]
    timeout: float
    on_chunk: ChunkHook | None = field(default=None, compare=False, repr=False)
    deadline: float | None = None
    owner: str = ""  # who the call is for (the plan's owner): the response cache never shares across owners
    # Cost controls and experiments (issue 14), all optional. ``model`` and ``system_prompt`` override an
    # ``llm`` agent's own (an experiment's variant, routing to a cheaper model); ``tokens_left`` is what the
    # plan's token budget has left, and caps the most the model may answer (agents/tokens.py).
    model: str | None = None
    system_prompt: str | None = None
    tokens_left: int | None = None

    def remaining(self) -> float:
        """Seconds left before the deadline (the try's timeout when there is none)."""
        return self.timeout if self.deadline is None else self.deadline - time.monotonic()

    def try_timeout(self) -> float:
        """How long the next try may take: its timeout, or less if the deadline is nearer."""
        return max(0.0, min(self.timeout, self.remaining()))

    def chunk(self, text: str) -> None:
        if self.on_chunk is not None and text:
            self.on_chunk(text)


@dataclass(frozen=True)
class Usage:
    """Tokens one call used; ``cost`` is filled in by ``agents.api`` from the price table.

    ``marks`` records how the call was served (issue 14): ``cached`` (true: from the response cache, at no
    cost), ``routed`` (``cheap`` | ``escalated`` | ``main``) with ``saved_cost``, and ``variant`` (the
    experiment's variant that shaped it). They are stored with the step's usage and its events."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cost: Decimal = Decimal(0)
    marks: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model": self.model, "cost": str(self.cost), **self.marks}


@dataclass(frozen=True)
class AgentResult:
    """``agent`` is the agent that answered: the one asked for, or its fallback."""

    output: Any
    usage: Usage | None = None
    agent: str = ""


class Agent(ABC):
    """One configured agent. ``run`` must enforce ``call.timeout`` itself (threads have no hard limit)."""

    kind: ClassVar[str]

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    @abstractmethod
    def run(self, call: AgentCall) -> AgentResult: ...
