"""What other apps may call (the orchestrator, the API views, the MCP server). Frozen dataclasses cross
the boundary (memory.types); models and querysets stay inside memory. Every call is scoped to an Owner."""

from __future__ import annotations

from memory.actions import agent_action, on_owner_of_plan
from memory.context import AssembledContext, Part, context_assemble, tokens
from memory.errors import EmbeddingFailed, MemoryError_, MemoryNotFound, WorkingConflict
from memory.scope import Owner
from memory.selectors import Filters, memory_get, memory_list, memory_search, working_read
from memory.services import (
    compact,
    memory_add,
    memory_delete,
    owner_forget,
    plan_archive,
    reembed,
    reencrypt,
    retention_set,
    step_remember,
    working_remember,
    working_set,
    working_update,
)
from memory.types import Added, Hit, Memory, Remembered, StepOutcome, WorkingValue

__all__ = [
    "Added",
    "AssembledContext",
    "EmbeddingFailed",
    "Filters",
    "Hit",
    "Memory",
    "MemoryError_",
    "MemoryNotFound",
    "Owner",
    "Part",
    "Remembered",
    "StepOutcome",
    "WorkingConflict",
    "WorkingValue",
    "agent_action",
    "compact",
    "context_assemble",
    "memory_add",
    "memory_delete",
    "memory_get",
    "memory_list",
    "memory_search",
    "on_owner_of_plan",
    "owner_forget",
    "plan_archive",
    "reembed",
    "reencrypt",
    "retention_set",
    "step_remember",
    "tokens",
    "working_read",
    "working_remember",
    "working_set",
    "working_update",
]
