"""What a ``memory`` agent step may do (agents/kinds/memory.py), on the memory of its plan's owner:

* ``{"action": "search", "query", "k": 5, "kinds": [], "mode": "hybrid"}`` -> ``{"results": [{id, kind, text,
  similarity, source}]}``
* ``{"action": "remember", "text", "kind": "fact"}`` -> ``{"id", "action"}`` (a near-duplicate fact updates)
* ``{"action": "read"}`` -> ``{"working": {name: {value, version}}}`` (the plan's scratchpad)
* ``{"action": "write", "name", "value", "expected_version"?}`` -> ``{"name", "version"}`` (compare-and-set
  when ``expected_version`` is given)

The owner comes from the orchestrator through ``on_owner_of_plan`` (registered in its AppConfig.ready()):
memory never reads the orchestrator's tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memory import selectors, services
from memory.errors import MemoryNotFound
from memory.scope import Owner
from memory.shapes import parse

_owner_of_plan: list[Callable[[uuid.UUID], int | None]] = []


def on_owner_of_plan(resolver: Callable[[uuid.UUID], int | None]) -> None:
    """Register how to find a plan's owner (the user id), or None for an unknown plan."""
    _owner_of_plan[:] = [resolver]


class MemoryAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["search", "remember", "read", "write"]
    query: str = Field(default="", max_length=4_000)
    k: int = Field(default=5, ge=1, le=100)
    kinds: list[Literal["fact", "note", "episode"]] = []
    mode: Literal["hybrid", "vector", "text"] = "hybrid"
    text: str = Field(default="", max_length=20_000)
    kind: Literal["fact", "note"] = "fact"
    name: str = Field(default="", max_length=100)
    value: Any = None
    expected_version: int | None = Field(default=None, ge=0)


def agent_action(*, plan_id: uuid.UUID, step_key: str, agent: str, step_input: dict[str, Any]) -> dict[str, Any]:
    """Run one memory action for a step. Raises MemoryError_ (bad input), MemoryNotFound (no such plan),
    WorkingConflict, EmbeddingFailed."""
    request = parse(MemoryAction, step_input)
    user_id = _owner_of_plan[0](plan_id) if _owner_of_plan else None
    if user_id is None:
        raise MemoryNotFound(f"no owner known for plan {plan_id}")
    owner = Owner(user_id)
    if request.action == "search":
        hits = selectors.memory_search(owner=owner, query=request.query or " ", k=request.k, mode=request.mode,
                                       filters=selectors.Filters(kinds=tuple(request.kinds)))
        services.recalled(owner=owner, ids=[h.memory.id for h in hits])  # a step used them: a recall
        return {"results": [{"id": str(h.memory.id), "kind": h.memory.kind, "text": h.memory.text,
                             "similarity": h.similarity, "source": h.memory.source} for h in hits]}
    if request.action == "remember":
        added = services.memory_add(owner=owner, text=request.text, kind=request.kind, agent=agent, plan_id=plan_id,
                                    step_key=step_key, source=f"plan:{plan_id}/step:{step_key}")
        return {"id": str(added.memory.id), "action": added.action}
    if request.action == "read":
        entries = selectors.working_read(owner=owner, plan_id=plan_id)
        return {"working": {name: {"value": e.value, "version": e.version} for name, e in entries.items()}}
    version = services.working_set(owner=owner, plan_id=plan_id, name=request.name, value=request.value,
                                   expected_version=request.expected_version, written_by=step_key)
    return {"name": request.name, "version": version}
