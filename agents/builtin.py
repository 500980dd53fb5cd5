"""Small ``python`` agents that ship with the orchestrator (see agents.yaml)."""

from __future__ import annotations

import time
from typing import Any


def noop(input: dict[str, Any], context: dict[str, Any]) -> None:
    """Does nothing: the overhead benchmark's step."""
    return None


def echo(input: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Returns its input and the keys of the results it was given."""
    return {"input": input, "from": sorted(context)}


def sleep(input: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``input["seconds"]`` (at most 60): a stand-in for slow work in tests and benchmarks."""
    seconds = min(float(input.get("seconds", 0.1)), 60.0)
    time.sleep(seconds)
    return {"slept": seconds}


def fail(input: dict[str, Any], context: dict[str, Any]) -> None:
    """Always fails with ``input["message"]``: for trying out failure handling."""
    raise ValueError(input.get("message", "this agent always fails"))
