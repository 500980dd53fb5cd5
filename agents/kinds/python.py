"""``python`` agents call a function by dotted path: ``fn(input: dict, context: dict) -> JSON-safe``.

Python cannot stop a thread, so the timeout is enforced by running the function on a pool of the agent's
own (``max_concurrency`` threads, default 64, started on demand) and waiting at most the try's timeout: a call
that hangs fails the try with ``agent.timeout`` and keeps only one of that pool's threads, never a new
thread per attempt. While every thread of the pool is stuck, further calls time out as well.
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
        self.pool = ThreadPoolExecutor(max_workers=spec.max_concurrency or DEFAULT_THREADS,
                                       thread_name_prefix=f"agent-{spec.name}")

    def run(self, call: AgentCall) -> AgentResult:
        future = self.pool.submit(self.fn, input=call.input, context=call.context)
        try:
            return AgentResult(output=future.result(timeout=call.timeout))
        except FutureTimeout:
            future.cancel()  # still queued behind stuck calls: it never starts
            raise AgentTimeout(f"agent {self.spec.name!r} did not answer within {call.timeout:g}s") from None
        except AgentError:
            raise
        except (ValueError, TypeError, KeyError, LookupError, ArithmeticError) as exc:
            # A bug or bad input in user code is terminal: the step fails with the message, no retry.
            raise AgentError(f"{type(exc).__name__}: {exc}", code="agent.python_error") from exc
