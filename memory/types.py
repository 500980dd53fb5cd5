"""What crosses memory's boundary: frozen dataclasses, plaintext (decrypted) content."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Memory:
    id: uuid.UUID
    kind: str
    text: str
    agent: str
    plan_id: uuid.UUID | None
    step_key: str
    source: str
    tier: str
    significance: float
    revisions: int
    last_action: str
    recall_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": str(self.id), "kind": self.kind, "text": self.text, "agent": self.agent,
                "plan_id": str(self.plan_id) if self.plan_id else None, "step_key": self.step_key,
                "source": self.source, "tier": self.tier, "significance": self.significance,
                "revisions": self.revisions, "last_action": self.last_action, "recall_count": self.recall_count,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


@dataclass(frozen=True)
class Added:
    """The outcome of a write: ``action`` is ``add``, ``update`` (a near-duplicate fact was rewritten) or
    ``noop`` (the same fact was already known); ``similarity`` to the nearest existing fact, if any."""

    memory: Memory
    action: str
    similarity: float | None = None


@dataclass(frozen=True)
class Hit:
    memory: Memory
    score: float  # reciprocal rank fusion of the vector and text rankings
    similarity: float | None  # cosine similarity to the query (None: found by text only)
    vector_rank: int | None
    text_rank: int | None


@dataclass(frozen=True)
class WorkingValue:
    value: Any
    version: int
    written_by: str


@dataclass(frozen=True)
class StepOutcome:
    key: str
    agent: str
    status: str
    output: Any = None
    error: str = ""
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Remembered:
    """The facts finishing a step wrote to memory (its episode waits for the plan's end)."""

    facts: tuple[Added, ...] = ()
