"""The guide's stream, ``GET /workflow/{id}/stream``: the plan's events under the guide's ``event:`` names.

The project's own names stay on ``/api/plans/{id}/events/``; here each event's ``event:`` line is renamed
(its ``data`` is unchanged: it still carries ``type``, the project's name, and ``id`` to resume from). The
library's control events (``stream-open``, ``keep-alive``, ``stream-error``) pass as they are.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from django.http import HttpResponseBase, StreamingHttpResponse

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
_EVENT_LINE = re.compile(rb"^event: ([^\n]*)$", re.MULTILINE)


def guide_name(project_name: str) -> str:
    if project_name in _LIBRARY_EVENTS:
        return project_name
    return GUIDE_NAMES.get(project_name, OTHER)


def _rename(chunk: bytes) -> bytes:
    return _EVENT_LINE.sub(lambda m: b"event: " + guide_name(m.group(1).decode()).encode(), chunk)


async def _renamed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield _rename(chunk)


def with_guide_names(response: HttpResponseBase) -> HttpResponseBase:
    """The same response, its SSE ``event:`` names translated (an error response is returned as is)."""
    if isinstance(response, StreamingHttpResponse) and response.is_async:
        response.streaming_content = _renamed(response.streaming_content)  # type: ignore[arg-type]
    return response
