"""``python`` agents call a function by dotted path: ``fn(input: dict, context: dict) -> JSON-safe``.

Python cannot stop a thread, so the timeout is enforced by running the function on a pool of the agent's
own (``max_concurrency`` threads, default 64, started on demand) and waiting at most the try's timeout: a call
that hangs fails the try with ``agent.timeout`` and keeps only one of that pool's threads, never a new
thread per attempt. While every thread of the pool is stuck, further calls time out as well.

``inline: true`` runs the function in the worker's own thread instead: no hand-over to a pool thread and back,
which is most of the cost of a call to a function that returns at once (a no-op step costs about a tenth less
with it). Its timeout is then not enforced: a call that hangs holds the worker's thread, and the step gets a
new attempt only when its lease runs out. For small functions that cannot block (``echo``, ``noop``), not for
anything that waits on the network or a lock.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.utils.module_loading import import_string

from agents.base import Agent, AgentCall, AgentResult, AgentSpec
from agents.errors import AgentConfigError, AgentError, AgentTimeout

DEFAULT_THREADS = 64


class PythonAgent(Agent):
    kind = "python"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        path = spec.options.get("callable")
        if not isinstance(path, str):
            raise AgentConfigError(f"agent {spec.name!r}: a python agent needs 'callable: module.function'")
        try:
            self.fn: Callable[..., Any] = import_string(path)
        except ImportError as exc:
            raise AgentConfigError(f"agent {spec.name!r}: cannot import {path!r}: {exc}") from exc
        self.pool = None if spec.options.get("inline") else ThreadPoolExecutor(
            max_workers=spec.max_concurrency or DEFAULT_THREADS, thread_name_prefix=f"agent-{spec.name}")

    def run(self, call: AgentCall) -> AgentResult:
        try:
            if self.pool is None:
                return AgentResult(output=self.fn(input=call.input, context=call.context))
            return AgentResult(output=self._pooled(self.pool, call))
        except AgentError:
            raise
        except (ValueError, TypeError, KeyError, LookupError, ArithmeticError) as exc:
            # A bug or bad input in user code is terminal: the step fails with the message, no retry.
            raise AgentError(f"{type(exc).__name__}: {exc}", code="agent.python_error") from exc

    def _pooled(self, pool: ThreadPoolExecutor, call: AgentCall) -> Any:
        future = pool.submit(self.fn, input=call.input, context=call.context)
        try:
            return future.result(timeout=call.timeout)
        except FutureTimeout:
            future.cancel()  # still queued behind stuck calls: it never starts
            raise AgentTimeout(f"agent {self.spec.name!r} did not answer within {call.timeout:g}s") from None
