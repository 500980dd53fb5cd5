"""The one base domain error. Every app's errors subclass it and carry a stable, documented ``code``."""

from __future__ import annotations


class DomainError(Exception):
    """An error a person or a client can act on: a stable dotted ``code`` and a readable message."""

    code: str = "error"
    http_status: int = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    code = "conflict"
    http_status = 409
