"""The plan event stream: what a client sees of ``PlanEvent`` rows, and their announcement to live subscribers.

One SSE channel per plan (``plan-<uuid>``). There is one copy of each event: the ``PlanEvent`` row that
``services.events_record`` writes. ``streams.live`` serves those rows (so a client resumes with
``Last-Event-ID`` from any event it saw, for as long as the plan exists, and the stream's ids are the rows'
ids, the same ids the REST snapshot reports), and ``publish_on_commit`` announces new rows once their
transaction has committed: each event's payload serialized once, here, and sent by a thread of the process's
own, which joins whatever transactions committed meanwhile into one Redis PUBLISH (``streams.hub`` fans it
out in every web process). So a step's end does not wait on Redis, and a busy worker sends one message for
many step ends.

The schema is documented in docs/events.md; ``payload`` is the only place that shapes an event for clients.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import cache
from queue import Empty, SimpleQueue
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.models import PlanEvent

log = logging.getLogger("orchestrator")

CHANNEL_PREFIX = "plan-"

# The guide's event names, carried as ``alias`` by the events they stand for.
ALIASES = {
    "step.started": "agent_started",
    "step.progress": "agent_update",
    "step.output": "agent_update",
    "step.succeeded": "agent_update",
    "step.failed": "agent_update",
    "step.retrying": "agent_update",
    "approval.required": "approval_required",
    "plan.completed": "complete",
    "plan.failed": "complete",
    "plan.cancelled": "complete",
}

# Keys whose values never leave the server in an event, at any depth: prompts, step inputs and credentials.
# The owner reads a step's input and output through the REST API; the stream only says what happened.
REDACTED_KEYS = frozenset({"prompt", "prompts", "messages", "system", "input", "context", "api_key",
                           "authorization", "password", "secret", "token", "access_token", "headers"})
REDACTED = "[redacted]"

# How long a transaction that writes events may still be committing (see snapshot_cursor).
SNAPSHOT_SETTLE_SECONDS = 5.0

def channel_for(plan_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{plan_id}"


def plan_id_of(channel: str) -> uuid.UUID | None:
    """The plan a channel belongs to, or None if it is not a plan channel."""
    if not channel.startswith(CHANNEL_PREFIX):
        return None
    try:
        return uuid.UUID(channel.removeprefix(CHANNEL_PREFIX))
    except ValueError:
        return None


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k.lower() in REDACTED_KEYS else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def payload(event: PlanEvent, *, actor_name: str | None = None) -> dict[str, Any]:
    """An event as every client sees it (SSE ``data``, the terminal follower): plan id, step key, time,
    monotonic id, type, the guide's alias, and the data with prompts, inputs and secrets redacted."""
    body: dict[str, Any] = {
        "id": event.id,
        "plan_id": str(event.plan_id),
        "step_key": event.step_key,
        "type": event.type,
        "time": event.created_at.isoformat(),
        "data": _redact(event.data or {}),
    }
    if event.type in ALIASES:
        body["alias"] = ALIASES[event.type]
    if actor_name:
        body["actor"] = actor_name
    return body


def events_after(*, plan_id: uuid.UUID, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """The plan's stored events with an id above ``after_id``, oldest first, as payloads."""
    rows = (PlanEvent.objects.filter(plan_id=plan_id, id__gt=after_id).select_related("actor").order_by("id"))
    return [payload(e, actor_name=e.actor.get_username() if e.actor else None)
            for e in (rows[:limit] if limit else rows)]


def last_event_id(*, plan_id: uuid.UUID) -> int:
    """The id of the plan's newest stored event (0 if none): where a client that loaded a snapshot resumes."""
    return int(PlanEvent.objects.filter(plan_id=plan_id).aggregate(last=Max("id"))["last"] or 0)


# --- publishing -------------------------------------------------------------------------------------------


def publish_on_commit(events: Iterable[PlanEvent]) -> None:
    """Announce freshly written events to live subscribers once the current transaction commits.

    Never raises into the caller: the events are stored whatever happens to the announcement, and a client
    that missed it catches up from storage (on reconnect, or when its web process resubscribes to Redis).
    """
    stored = list(events)
    if stored:
        transaction.on_commit(lambda: _announce(stored), robust=True)
        for hook in _RECORDED_HOOKS:  # issue 11: webhooks (integrations), after commit, never raising
            transaction.on_commit(lambda hook=hook: hook(stored), robust=True)  # type: ignore[misc]


# Callbacks given the freshly committed events of a transaction (registered in an AppConfig.ready()).
_RECORDED_HOOKS: list[Callable[[list[PlanEvent]], None]] = []


def on_recorded(hook: Callable[[list[PlanEvent]], None]) -> None:
    if hook not in _RECORDED_HOOKS:
        _RECORDED_HOOKS.append(hook)


# After a failed publish, this process skips publishing for a few seconds: the events are stored, and a
# Redis that is down (or hangs) must not cost every request a connection attempt.
PUBLISH_PAUSE_SECONDS = 5.0
_paused_until = 0.0


PUBSUB_CHANNEL = "streams:plan-events"  # every web process subscribes (streams.hub)


def encode(events: list[tuple[str, int, str, str]]) -> bytes:
    """The Redis message for a transaction's events, ``(plan_id, id, type, payload JSON)`` each: one line per
    event, ``<plan> <id> <type> <json>``. Types are dotted names and ``json.dumps`` writes no raw newline, so a
    web process splits lines instead of parsing JSON."""
    return "\n".join(f"{plan} {event_id} {kind} {data}" for plan, event_id, kind, data in events).encode()


def decode(message: bytes) -> list[tuple[str, int, str, str]]:
    """The events of one message; raises ValueError on a malformed line."""
    events = []
    for line in message.decode().split("\n"):
        plan, event_id, kind, data = line.split(" ", 3)
        events.append((plan, int(event_id), kind, data))
    return events


# The announcements waiting for this process's publisher thread (started on first use, again in a forked child).
_outbox: SimpleQueue[list[PlanEvent]] = SimpleQueue()
_publisher_pid = 0
_publisher_lock = threading.Lock()
PUBLISH_BATCH = 500  # events at most in one message


def _announce(events: list[PlanEvent]) -> None:
    """Hand committed events to the publisher thread (never blocks on Redis)."""
    global _publisher_pid

    if _publisher_pid != os.getpid():
        with _publisher_lock:
            if _publisher_pid != os.getpid():
                threading.Thread(target=_publisher, name="events-publisher", daemon=True).start()
                _publisher_pid = os.getpid()
    _outbox.put(events)


def _publisher() -> None:
    """Publish what the outbox holds, oldest first: what arrived while the last PUBLISH was sent goes out
    together in the next one."""
    while True:
        batch = _more(_outbox.get())
        try:
            _publish(batch)
        except Exception:  # the thread must outlive anything: a lost announcement is caught up from storage
            log.exception("orchestrator.events.publisher_failed")


def _more(first: list[PlanEvent]) -> list[PlanEvent]:
    """A new list of ``first`` and what the outbox holds now, up to about PUBLISH_BATCH events (never waits)."""
    batch = list(first)
    while len(batch) < PUBLISH_BATCH:
        try:
            batch.extend(_outbox.get_nowait())
        except Empty:
            break
    return batch


def _reset_after_fork() -> None:
    global _outbox, _publisher_pid, _publisher_lock

    # The parent's thread is not in the child, and a lock it held at the fork would stay held there.
    _outbox, _publisher_pid, _publisher_lock = SimpleQueue(), 0, threading.Lock()


def _flush() -> None:
    """At exit: send what the publisher thread has not taken yet (a warm shutdown loses no announcement)."""
    while batch := _more([]):
        _publish(batch)


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_flush)


def _publish(events: list[PlanEvent]) -> None:
    global _paused_until

    if time.monotonic() < _paused_until:
        return
    message = encode([(str(e.plan_id), e.id, e.type,
                       json.dumps(payload(e, actor_name=_actor_name(e)), cls=DjangoJSONEncoder)) for e in events])
    try:
        _redis().publish(PUBSUB_CHANNEL, message)
    except (RedisError, OSError):
        _paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
        log.warning("orchestrator.events.publish_failed", exc_info=True,
                    extra={"plan_id": str(events[0].plan_id), "event_id": events[0].id, "events": len(events)})


PUBLISH_TIMEOUT = 2.0  # seconds a PUBLISH may take: a Redis that accepts and never answers pauses publishing


@cache
def _redis() -> Redis:
    return Redis(**{**settings.STREAMS_REDIS, "socket_timeout": PUBLISH_TIMEOUT})


def _actor_name(event: PlanEvent) -> str | None:
    # Set on the instance by whoever recorded it. Never a query: this runs on the publisher thread, which must
    # not open a connection of its own (nothing would give it back to the pool).
    actor = event.actor if event.actor_id and PlanEvent.actor.is_cached(event) else None
    return actor.get_username() if actor is not None else None


def pending_approvals(*, plan_id: uuid.UUID, up_to_id: int | None = None) -> list[dict[str, Any]]:
    """Approvals the plan's events say are still open (``approval.required`` with no ``approval.decided``
    for the same approval id), oldest first: what a live page shows as links when it opens."""
    rows = PlanEvent.objects.filter(plan_id=plan_id, type__in=("approval.required", "approval.decided"))
    if up_to_id is not None:
        rows = rows.filter(id__lte=up_to_id)
    open_: dict[str, dict[str, Any]] = {}
    for event in rows.order_by("id"):
        approval_id = str((event.data or {}).get("approval_id", ""))
        if event.type == "approval.required":
            open_[approval_id] = {"approval_id": approval_id, "step_key": event.step_key,
                                  "admin_url": event.data.get("admin_url", ""), "event_id": event.id}
        else:
            open_.pop(approval_id, None)
    return list(open_.values())


def snapshot_cursor(*, plan_id: uuid.UUID, settle_seconds: float = SNAPSHOT_SETTLE_SECONDS) -> int:
    """Where a client that loads a snapshot now should stream from.

    Event ids are allocated when a row is inserted, not when its transaction commits: two steps of a plan
    claimed at the same moment can commit in the other order. So the newest id is not a safe place to
    start: a sibling with a lower id may still be committing. This cursor stops before any event younger
    than ``settle_seconds``; the few events after it that the snapshot already reflects are replayed on
    top of it, which is harmless (each carries its step's state as of that event, in id order).
    """
    cutoff = timezone.now() - timedelta(seconds=settle_seconds)
    young = PlanEvent.objects.filter(plan_id=plan_id, created_at__gte=cutoff).aggregate(first=Min("id"))["first"]
    if young is None:
        return last_event_id(plan_id=plan_id)
    older = PlanEvent.objects.filter(plan_id=plan_id, id__lt=young).aggregate(last=Max("id"))["last"]
    return int(older or 0)
