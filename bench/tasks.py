"""Plain Celery tasks for the raw baselines (workers started by the harness import this with ``-I``).

Same app, broker, serializer and acks_late as the orchestrator's tasks; results are stored (a chord needs
them), which the orchestrator's run_step does not do.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from config.celery import app


def use_result_backend() -> None:
    """Give this process's Celery app a result backend (Redis), for the raw chords: the project runs without
    one (its tasks ignore results), and the app caches the disabled one per thread."""
    from django.conf import settings

    app.conf.result_backend = settings.REDIS_URL
    app._local.__dict__.pop("backend", None)


@app.task(name="bench.noop", queue="agents", ignore_result=False)
def noop() -> None:
    """The raw counterpart of a ``noop`` step."""
    return


@app.task(name="bench.join", queue="agents", ignore_result=False)
def join(results: list[Any]) -> float:
    """A chord body: returns the epoch time it ran at, the raw chord's completion time."""
    return time.time()


_client: httpx.Client | None = None


@app.task(name="bench.post", queue="agents", ignore_result=False)
def post(url: str, i: int) -> None:
    """The raw counterpart of an ``http`` step: one POST on a shared client (as the http agent keeps one),
    its JSON answer read."""
    global _client
    if _client is None:
        _client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=256))
    _client.post(url, json={"i": i}).json()
