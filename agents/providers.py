"""Which provider and model each ``llm`` agent uses, for the startup log, ``/health`` and the CLI: a
person who set a key should see at once whether it took (and one who did not, that answers are offline)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents import registry
from agents.errors import AgentError
from agents.kinds.llm import LlmAgent

log = logging.getLogger("agents")


@dataclass(frozen=True)
class LlmChoice:
    agent: str
    provider: str  # openai | anthropic | offline
    model: str
    base_url: str  # "" for offline


def llm_choices() -> list[LlmChoice]:
    """Every llm agent of the registry with its provider and model, by name."""
    found = []
    for name in sorted(registry.specs()):
        target = registry.agent(name)
        if isinstance(target, LlmAgent):
            offline = target.provider == "offline"
            found.append(LlmChoice(name, target.provider, target.model, "" if offline else target.base_url))
    return found


def llm_summary(choices: list[LlmChoice]) -> str:
    """One line a person reads: ``llm agents: openai gpt-4o-mini (planner, ...)``, offline said plainly."""
    groups: dict[tuple[str, str], list[str]] = {}
    for choice in choices:
        groups.setdefault((choice.provider, choice.model), []).append(choice.agent)
    parts = []
    for (provider, model), names in sorted(groups.items()):
        what = ("offline (no LLM key set: canned answers, no model is called)" if provider == "offline"
                else f"{provider} {model}")
        parts.append(f"{what} for {', '.join(names)}")
    return "llm agents: " + "; ".join(parts) if parts else "llm agents: none"


def llm_log_choices() -> None:
    """Log, once per process start, which provider and model each llm agent uses. A broken registry is
    logged, not raised: the process still starts, and the first step of that agent fails with its code."""
    try:
        choices = llm_choices()
    except AgentError as exc:
        log.error("agents.llm.providers_unknown", extra={"code": exc.code, "error": str(exc)})
        return
    log.info("agents.llm.providers", extra={
        "summary": llm_summary(choices),
        "agents": {c.agent: {"provider": c.provider, "model": c.model} for c in choices}})
