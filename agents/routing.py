"""Routing to a cheaper model (issue 14): an ``llm`` agent with ``cheap_model`` sends a simple input to
that model first and escalates to its own model when the cheap answer fails or reports low confidence.

Simple: the user message (prompt and context) is at most ``route.max_chars`` long and holds none of
``route.complex_keywords``. Confidence: a ``confidence`` number in the answer, as a JSON field (the output's,
or the answer text's when it is a JSON object) or written as ``confidence: 0.4`` in the text; an answer
that reports none counts as confident.

The decision is recorded in the result's usage: ``routed`` (``cheap``: the cheap answer was kept;
``escalated``; ``main``: not simple), ``saved_cost`` (USD; what the agent's own model would have cost for
the same tokens, less what was paid; an escalation's saving is minus the cheap try's cost) and, when
escalated, ``escalation`` (``low_confidence`` | ``failed``). An escalated call's usage counts both tries.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.conf import settings

from agents.base import AgentCall, AgentResult, AgentSpec, Usage
from agents.cache import RECALLED
from agents.cost_options import RouteOptions, parse
from agents.costs import cost_of, priced
from agents.errors import AgentError, CircuitOpen
from agents.kinds.llm import user_message

log = logging.getLogger("agents")

_CONFIDENCE = re.compile(r"confidence\W{0,3}\s*[:=]\s*\"?(\d*\.?\d+)", re.IGNORECASE)


def is_simple(route: RouteOptions, call: AgentCall) -> bool:
    # Long-term memories recalled into the context are supporting material: they never make a question hard.
    context = {key: value for key, value in call.context.items() if key != RECALLED}
    text = user_message(call.input, context)
    lowered = text.lower()
    return len(text) <= route.max_chars and not any(word.lower() in lowered for word in route.complex_keywords)


def confidence_of(output: Any) -> float | None:
    """The confidence an answer reports, or None."""
    if isinstance(output, dict):
        if isinstance(output.get("confidence"), int | float):
            return float(output["confidence"])
        output = output.get("text")
    if not isinstance(output, str):
        return None
    try:
        parsed = json.loads(output)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("confidence"), int | float):
        return float(parsed["confidence"])
    found = _CONFIDENCE.search(output)
    return float(found.group(1)) if found else None


def routed_run(spec: AgentSpec, call: AgentCall, run: Callable[[AgentCall], AgentResult], *,
               main_model: str) -> AgentResult:
    """``run`` the call on the cheap model or the agent's own, as the agent's route says. A call that
    already names its model (an experiment's variant) is not routed. The usage comes back priced."""
    options = parse(spec)
    route = options.routing
    if route is None or options.cheap_model is None or call.model or not settings.AGENT_ROUTING_ENABLED:
        return run(call)
    if not is_simple(route, call):
        return _marked(run(call), routed="main", saved=Decimal(0))
    cheap_model = options.cheap_model
    try:
        cheap = run(replace(call, model=cheap_model))
    except CircuitOpen:
        raise
    except AgentError as exc:
        log.info("agents.route.escalated", extra={"agent": spec.name, "step_id": call.step_id,
                                                  "reason": "failed", "code": exc.code})
        return _marked(run(call), routed="escalated", saved=Decimal(0), escalation="failed")
    cheap_usage = priced(cheap.usage) if cheap.usage is not None else Usage(model=cheap_model)
    confidence = confidence_of(cheap.output)
    if confidence is None or confidence >= route.min_confidence:
        main_name = cheap_usage.model.replace(cheap_model, main_model)  # e.g. offline/<model>
        would_cost = cost_of(main_name, cheap_usage.prompt_tokens, cheap_usage.completion_tokens)
        log.info("agents.route.cheap", extra={"agent": spec.name, "step_id": call.step_id})
        return _marked(replace(cheap, usage=cheap_usage), routed="cheap", saved=would_cost - cheap_usage.cost)
    log.info("agents.route.escalated", extra={"agent": spec.name, "step_id": call.step_id,
                                              "reason": "low_confidence", "confidence": confidence})
    main = run(call)
    main_usage = priced(main.usage) if main.usage is not None else Usage(model=main_model)
    both = Usage(main_usage.prompt_tokens + cheap_usage.prompt_tokens,
                 main_usage.completion_tokens + cheap_usage.completion_tokens, main_usage.model,
                 main_usage.cost + cheap_usage.cost)
    return _marked(replace(main, usage=both), routed="escalated", saved=-cheap_usage.cost,
                   escalation="low_confidence", cheap_confidence=confidence)


def _marked(result: AgentResult, *, routed: str, saved: Decimal, **more: Any) -> AgentResult:
    usage = result.usage or Usage()
    if more.get("escalation") != "low_confidence":  # that one's usage is both tries, priced each by its model
        usage = priced(usage)
    marks = {**usage.marks, "routed": routed, "saved_cost": str(saved), **more}
    return replace(result, usage=replace(usage, marks=marks))
