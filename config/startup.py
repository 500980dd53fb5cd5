"""Refuse to start on a broken configuration: every process (web, workers, beat) runs the ``config``
system checks (agents.yaml, approvals.yaml, the workflow templates) when it starts, and exits with the
problem on one line, before it serves or consumes anything. ``manage.py check`` runs the same checks."""

from __future__ import annotations

import sys

from django.core import checks


def exit_on_configuration_errors() -> None:
    errors = [message for message in checks.run_checks(tags=["config"]) if message.is_serious()]
    for message in errors:
        print(f"configuration error ({message.id}): {message.msg}", file=sys.stderr)
    if errors:
        raise SystemExit(1)
