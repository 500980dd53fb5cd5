"""The guide's stream, ``GET /workflow/{id}/stream``: the plan's events under the guide's ``event:`` names.

The project's own names stay on ``/api/plans/{id}/events/``; here each event's ``event:`` line carries the
guide's name (its ``data`` is unchanged: it still carries ``type``, the project's name, and ``id`` to resume
from). ``streams.hub.render`` writes both names once per event. The control events (``stream-open``,
``keep-alive``, ``stream-error``) keep theirs.
"""

from __future__ import annotations

GUIDE_NAMES = {
    "step.started": "agent_started",
    "step.output": "agent_update",
    "step.retrying": "agent_update",
    "step.progress": "progress",
    "step.succeeded": "agent_completed",
    "step.failed": "agent_completed",
    "step.rejected": "agent_completed",
    "step.cancelled": "agent_completed",
    "approval.required": "approval_required",
    "plan.completed": "complete",
    "plan.failed": "complete",
    "plan.cancelled": "complete",
}
# Everything else that happens to a plan (created, started, a step queued or waiting, a vote) is progress.
OTHER = "progress"
_LIBRARY_EVENTS = frozenset({"stream-open", "stream-reset", "keep-alive", "stream-error"})


def guide_name(project_name: str) -> str:
    if project_name in _LIBRARY_EVENTS:
        return project_name
    return GUIDE_NAMES.get(project_name, OTHER)
