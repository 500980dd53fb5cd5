"""``manage.py check`` (and every process at startup, config/startup.py): every workflow template is valid."""

from __future__ import annotations

from typing import Any

from django.core import checks

from orchestrator import planning


@checks.register("config")
def workflow_templates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for name in planning.template_names():
        try:
            planning.template_load(name)
        except planning.PlanInvalid as exc:
            errors.append(checks.Error(exc.message, id="orchestrator.E001"))
    return errors
