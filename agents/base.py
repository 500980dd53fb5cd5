"""The agent interface: one call in, one JSON-safe result out. Kinds live in ``agents/kinds/``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class AgentSpec:
    """An agent as configured in agents.yaml: its name, kind and kind-specific options."""

    name: str
    kind: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    queue: str = "agents"
    timeout: float = 120.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentCall:
    """What a step hands its agent. ``context`` holds the outputs of the step's dependencies by key."""

    plan_id: str
    step_id: str
    step_key: str
    attempt: int
    input: dict[str, Any]
    context: dict[str, Any]
    timeout: float


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""


@dataclass(frozen=True)
class AgentResult:
    output: Any
    usage: Usage | None = None


class Agent(ABC):
    """One configured agent. ``run`` must enforce ``call.timeout`` itself (threads have no hard limit)."""

    kind: ClassVar[str]

    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec

    @abstractmethod
    def run(self, call: AgentCall) -> AgentResult: ...
