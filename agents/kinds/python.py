"""``python`` agents call a function by dotted path: ``fn(input: dict, context: dict) -> JSON-safe``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from agents.base import Agent, AgentCall, AgentResult, AgentSpec
from agents.errors import AgentConfigError, AgentError


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

    def run(self, call: AgentCall) -> AgentResult:
        try:
            return AgentResult(output=self.fn(input=call.input, context=call.context))
        except AgentError:
            raise
        except (ValueError, TypeError, KeyError, LookupError, ArithmeticError) as exc:
            # A bug or bad input in user code is terminal: the step fails with the message, no retry.
            raise AgentError(f"{type(exc).__name__}: {exc}", code="agent.python_error") from exc
