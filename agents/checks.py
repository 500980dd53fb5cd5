"""``manage.py check`` (and every process at startup, config/startup.py): agents.yaml is valid."""

from __future__ import annotations

from typing import Any

from django.core import checks

from agents import registry
from agents.errors import AgentConfigError


@checks.register("config")
def agents_file(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        registry.specs()
        registry.prices()
        registry.rate_limits()
    except AgentConfigError as exc:
        return [checks.Error(exc.message, hint="see the comments at the top of agents.yaml", id="agents.E001")]
    return []
