"""A python agent that hangs until a test releases it (a stand-in for user code stuck on a lock)."""

from __future__ import annotations

import threading
from typing import Any

released = threading.Event()


def hang(input: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    released.wait(timeout=120)
    return {"released": True}
