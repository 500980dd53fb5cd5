"""Request shapes of the memory API and MCP tools (pydantic, extra fields refused), validated at the edge."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memory.errors import MemoryError_

__all__ = ["MemoryCreate", "MemorySearch", "parse"]


class MemoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)
    kind: Literal["fact", "note", "episode"] = "fact"
    agent: str = Field(default="", max_length=100)
    significance: float = Field(default=0.5, ge=0, le=1)


class MemorySearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4_000)
    k: int = Field(default=10, ge=1, le=100)
    mode: Literal["hybrid", "vector", "text"] = "hybrid"
    kinds: list[Literal["fact", "note", "episode"]] = []
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse[T: BaseModel](shape: type[T], data: object) -> T:
    """Raises MemoryError_ (memory.invalid) with pydantic's first complaint."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise MemoryError_(f"{where}: {first['msg']}", code="memory.invalid") from None
