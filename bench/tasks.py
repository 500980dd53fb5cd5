"""Plain Celery tasks for the raw baselines (workers started by the harness import this with ``-I``).

Same app, broker, serializer and acks_late as the orchestrator's tasks; results are stored (a chord needs
them), which the orchestrator's run_step does not do.
"""

from __future__ import annotations

import time
from typing import Any

from config.celery import app


@app.task(name="bench.noop", queue="agents", ignore_result=False)
def noop() -> None:
    """The raw counterpart of a ``noop`` step."""
    return


@app.task(name="bench.join", queue="agents", ignore_result=False)
def join(results: list[Any]) -> float:
    """A chord body: returns the epoch time it ran at, the raw chord's completion time."""
    return time.time()


@app.task(name="bench.post", queue="agents", ignore_result=False)
def post(url: str, i: int) -> None:
    """The raw counterpart of an ``http`` step: one POST, its JSON answer read."""
    import httpx

    httpx.post(url, json={"i": i}, timeout=30).json()
