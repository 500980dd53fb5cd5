"""Memory's errors: subclasses of the one domain error, each with a stable code (docs/errors.md)."""

from __future__ import annotations

from common.errors import Conflict, DomainError, NotFound


class MemoryError_(DomainError):  # noqa: N801 - not the builtin MemoryError
    code = "memory.invalid"


class MemoryNotFound(NotFound):
    code = "not_found"


class WorkingConflict(Conflict):
    """A compare-and-set on a working-memory entry lost: someone wrote it first."""

    code = "memory.conflict"

    def __init__(self, message: str, *, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class EmbeddingFailed(DomainError):
    """The embedding provider did not answer usefully (timeout, HTTP error, wrong shape or dimension)."""

    code = "memory.embedding_failed"
    http_status = 502


class KeysMissing(DomainError):
    code = "memory.keys_missing"
    http_status = 500
