"""``manage.py check`` (and every process at startup, config/startup.py): every workflow template is valid."""

from __future__ import annotations

from typing import Any

from django.core import checks

from agents.api import AgentConfigError
from orchestrator import planning


@checks.register("config")
def workflow_templates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for name in planning.template_names():
        try:
            template = planning.template_load(name)
        except planning.PlanInvalid as exc:
            errors.append(checks.Error(exc.message, id="orchestrator.E001"))
            continue
        errors += _rule_agents(template)
    return errors


def _rule_agents(template: planning.Template) -> list[checks.CheckMessage]:
    """Issue 10: the agents a template's dynamic rules would spawn are in the registry (a broken registry is
    reported by agents.E001, not here)."""
    try:
        known = planning.known_agents()
    except AgentConfigError:
        return []
    return [checks.Error(f"workflow template {template.name!r}: dynamic_rules.{index} spawns unknown agent "
                         f"{task.agent!r}", id="orchestrator.E002")
            for index, rule in enumerate(template.rules) for task in rule.spawn_tasks if task.agent not in known]
