"""Python agents for the tests: one that hangs until a test releases it (a stand-in for user code stuck on a
lock), one that names the thread it runs in."""

from __future__ import annotations

import threading
from typing import Any

released = threading.Event()


def hang(input: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    released.wait(timeout=120)
    return {"released": True}


def where(input: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The name of the thread it runs in (inline agents run in the caller's); raises KeyError on ``{"fail": 1}``."""
    if input.get("fail"):
        raise KeyError("asked to fail")
    return {"thread": threading.current_thread().name}
