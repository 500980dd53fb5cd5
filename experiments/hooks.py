"""The agents app's call hook (registered in ExperimentsConfig.ready()): a plan's variant overrides the
prompt or model of its experiment's agent, and every call of an assigned plan is marked with the variant.

Runs in a worker right before an agent call, when no connection should be held: it reads one row and
gives the connection back (unless it runs inside a caller's transaction). While no experiment runs it
costs one query every few seconds per process.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from agents.api import AgentCall
from experiments.models import Assignment, Experiment, Status

log = logging.getLogger("experiments")

_running: dict[str, float | bool] = {"checked": 0.0, "any": False}


def any_running() -> bool:
    """Does any experiment run? Asked again every EXPERIMENTS_RUNNING_TTL seconds per process."""
    now = time.monotonic()
    if now - float(_running["checked"]) >= settings.EXPERIMENTS_RUNNING_TTL:
        _running["any"] = Experiment.objects.filter(status=Status.RUNNING).exists()
        _running["checked"] = now
    return bool(_running["any"])


def forget() -> None:
    """Look again at once (tests, the admin after a change in this process)."""
    _running["checked"] = 0.0


def call_variant(name: str, call: AgentCall) -> tuple[AgentCall, dict[str, Any]]:
    try:
        plan_id = uuid.UUID(call.plan_id)
    except ValueError:
        return call, {}
    try:
        if not any_running():
            return call, {}
        row = (Assignment.objects.filter(plan_id=plan_id)
               .values("experiment__name", "experiment__agent", "variant__name", "variant__system_prompt",
                       "variant__model").first())
    except DatabaseError as exc:  # an experiment is never worth failing a call over: run it unchanged
        log.warning("experiments.hook.unavailable", extra={"plan_id": call.plan_id, "error": repr(exc)})
        return call, {}
    finally:
        if not connection.in_atomic_block:
            connection.close()  # no connection held across the agent call
    if row is None:
        return call, {}
    marks = {"variant": f"{row['experiment__name']}/{row['variant__name']}"}
    if row["experiment__agent"] != name:
        return call, marks
    overrides: dict[str, Any] = {}
    if row["variant__system_prompt"]:
        overrides["system_prompt"] = row["variant__system_prompt"]
    if row["variant__model"]:
        overrides["model"] = row["variant__model"]
    return (replace(call, **overrides) if overrides else call), marks
