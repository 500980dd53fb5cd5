"""A python agent for tests/orchestrator/test_dynamic.py: its output is whatever ``input.output`` says
(after ``input.sleep`` seconds), so a test chooses what a step spawns."""

from __future__ import annotations

import time
from typing import Any


def emit(input: dict[str, Any], context: dict[str, Any]) -> Any:
    time.sleep(float(input.get("sleep", 0)))
    return input.get("output", {})
