"""The judge: an LLM agent (``judge`` in agents.yaml unless an experiment names another) scores a plan's
result against the experiment's rubric, 0 to 10. It answers JSON ``{"score", "reason"}`` (or says
``score: N``). The offline provider answers deterministically: see agents/kinds/llm.py ``offline_judge``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from agents.api import JUDGE_REQUEST, AgentCall, AgentError, agent_get, agent_run

log = logging.getLogger("experiments")

_SCORE = re.compile(r"score\W{0,3}\s*[:=]\s*\"?(\d+(?:\.\d+)?)", re.IGNORECASE)


def judge_prompt(*, rubric: str, request: str, result: Any) -> str:
    answer = result if isinstance(result, str) else json.dumps(result, sort_keys=True, default=str)
    return (f"RUBRIC:\n{rubric}\n\nREQUEST:\n{request}\n\nANSWER:\n{answer}\n\n"
            f"{JUDGE_REQUEST} against the rubric. Answer with JSON only: {{\"score\": number, \"reason\": string}}")


def score_of(output: Any) -> float | None:
    text = output.get("text") if isinstance(output, dict) and "score" not in output else output
    if isinstance(text, dict):
        value = text.get("score")
        return float(value) if isinstance(value, int | float) else None
    if not isinstance(text, str):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("score"), int | float):
        return min(10.0, max(0.0, float(parsed["score"])))
    found = _SCORE.search(text)
    return min(10.0, float(found.group(1))) if found else None


def judge_score(*, agent: str, rubric: str, plan_id: uuid.UUID, request: str, result: Any) -> float | None:
    """The judge's score of one plan's result, or None if the judge failed or gave none (logged)."""
    try:
        call = AgentCall(plan_id=str(plan_id), step_id=f"judge:{plan_id}", step_key="judge", attempt=1,
                         input={"prompt": judge_prompt(rubric=rubric, request=request, result=result)},
                         context={}, timeout=agent_get(agent).timeout)
        output = agent_run(name=agent, call=call).output
    except AgentError as exc:
        log.warning("experiments.judge.failed", extra={"plan_id": str(plan_id), "code": exc.code})
        return None
    score = score_of(output)
    if score is None:
        log.warning("experiments.judge.no_score", extra={"plan_id": str(plan_id)})
    return score
