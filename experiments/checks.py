"""``manage.py check`` (and every process's start): experiments.yaml is valid and names real agents and
templates."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from experiments import config


@register("experiments")
def experiments_file_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from agents.api import AgentError, agent_list

    config.load.cache_clear()
    try:
        found = config.load()
        agents = {spec.name for spec in agent_list()}
    except (config.ExperimentConfigError, AgentError) as exc:
        return [Error(str(exc.message), id="experiments.E001")]
    templates = {path.stem for path in settings.ORCH_WORKFLOWS_DIR.glob("*.yaml")}
    return [Error(problem, obj=str(settings.EXPERIMENTS_FILE), id="experiments.E002")
            for problem in config.known_names(found, agents=agents, templates=templates)]
