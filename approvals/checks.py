"""``manage.py check`` (and every process at startup, config/startup.py): approvals.yaml is valid."""

from __future__ import annotations

from typing import Any

from django.core import checks

from approvals import policies


@checks.register("config")
def policies_file(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        policies._yaml_policies()
    except policies.PoliciesFileInvalid as exc:
        return [checks.Error(exc.message, hint="see the comments at the top of approvals.yaml", id="approvals.E001")]
    return []
