"""django-eventstream's adapters to the plan event record (EVENTSTREAM_STORAGE_CLASS and
EVENTSTREAM_CHANNELMANAGER_CLASS): the library serves ``PlanEvent`` rows as they are, and only a plan's owner
(or staff with orchestrator.view_plan) may read its channel. What an event looks like is
``orchestrator.events.payload``."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpRequest
from django_eventstream.channelmanager import ChannelManagerBase  # type: ignore[import-untyped]
from django_eventstream.event import Event  # type: ignore[import-untyped]
from django_eventstream.storage import StorageBase  # type: ignore[import-untyped]

from common.errors import NotFound
from orchestrator.events import channel_for, events_after, last_event_id, plan_id_of


def _gives_back_connection[**P, R](function: Callable[P, R]) -> Callable[P, R]:
    """Return the pooled DB connection after the call (outside a transaction).

    The stream's reads run on its request's own thread for as long as the client stays connected, and
    Django only releases a request's connection when the response ends: without this, every open stream
    would hold a connection and a few dozen viewers would drain the pool.
    """

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return wrapper


class PlanEventStorage(StorageBase):  # type: ignore[misc]
    """EVENTSTREAM_STORAGE_CLASS: the plan's ``PlanEvent`` rows are the stream's storage (no second copy).

    Ids are ``PlanEvent`` ids: monotonic but not consecutive within a plan, so any id is a valid resume
    point and there is nothing to trim (the rows are the audit trail, kept with the plan).
    """

    def append_event(self, channel: str, event_type: str, data: str) -> Event:
        """Called by ``send_event`` with an event ``events_record`` has already stored and committed:
        ``data`` is its payload (JSON), which carries the row's id. Writes nothing."""
        return Event(channel, event_type, data, id=int(json.loads(data)["id"]))

    @_gives_back_connection
    def get_events(self, channel: str, last_id: int, limit: int = 100) -> list[Event]:
        plan_id = plan_id_of(channel)
        if plan_id is None:
            return []
        return [Event(channel, p["type"], json.dumps(p), id=p["id"])
                for p in events_after(plan_id=plan_id, after_id=int(last_id), limit=limit)]

    @_gives_back_connection
    def get_current_id(self, channel: str) -> int:
        plan_id = plan_id_of(channel)
        return last_event_id(plan_id=plan_id) if plan_id else 0


class PlanChannelManager(ChannelManagerBase):  # type: ignore[misc]
    """EVENTSTREAM_CHANNELMANAGER_CLASS: a request streams the one plan named in its URL, and only the
    plan's owner (or staff with orchestrator.view_plan) may read it. Checked again on every catch-up read."""

    def get_channels_for_request(self, request: HttpRequest, view_kwargs: dict[str, Any]) -> set[str]:
        return {channel_for(view_kwargs["plan_id"])}

    @_gives_back_connection
    def can_read_channel(self, user: User | None, channel: str) -> bool:
        from orchestrator.selectors import plan_get

        plan_id = plan_id_of(channel)
        if user is None or plan_id is None:
            return False
        try:
            plan_get(user=user, plan_id=plan_id)
        except NotFound:
            return False
        return True

    def is_channel_reliable(self, channel: str) -> bool:
        return True
