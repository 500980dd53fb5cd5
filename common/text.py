"""Making text storable: PostgreSQL's text and jsonb cannot hold U+0000, and psycopg cannot encode a lone
surrogate. Input from clients is refused at the edge; output from agents is escaped here instead, so that a
step's result is kept (visibly marked) rather than lost."""

from __future__ import annotations

from typing import Any


def storable_text(text: str) -> str:
    """``text`` with U+0000 written as the six characters ``\\u0000`` and lone surrogates as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def storable(value: Any) -> Any:
    """A JSON-safe value with every string (keys included) made storable; other values unchanged."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)) if isinstance(k, str) else k: storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
