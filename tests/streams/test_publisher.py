"""Announcing committed events (orchestrator/events.py): from a thread of the process's own, so that a step's
end never waits on Redis, and every event still goes out."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from orchestrator import events
from orchestrator.models import PlanEvent


def _event(plan_id: uuid.UUID, event_id: int) -> PlanEvent:
    return PlanEvent(id=event_id, plan_id=plan_id, step_key="s", type="step.started", data={},
                     created_at=timezone.now())


@pytest.fixture
def silent_redis() -> Iterator[dict[str, Any]]:
    """A server that accepts connections and never answers (a Redis that hangs)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        tcp = {k: v for k, v in settings.STREAMS_REDIS.items() if k not in ("path", "connection_class")}
        yield {**tcp, "host": "127.0.0.1", "port": server.getsockname()[1]}
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def _received(plan_id: uuid.UUID, subscriber: Any, until: float) -> set[int]:
    seen: set[int] = set()
    while time.monotonic() < until:
        message = subscriber.get_message(timeout=0.1)
        if message and message["type"] == "message":
            seen |= {event_id for plan, event_id, _, _ in events.decode(message["data"]) if plan == str(plan_id)}
    return seen


@pytest.mark.django_db
def test_a_redis_that_hangs_holds_up_no_commit_and_publishing_resumes_after_it(
        silent_redis: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any) -> None:
    plan_id = uuid.uuid4()
    monkeypatch.setattr(events, "PUBLISH_PAUSE_SECONDS", 0.2)
    monkeypatch.setattr(events, "PUBLISH_TIMEOUT", 0.5)
    monkeypatch.setattr(settings, "STREAMS_REDIS", silent_redis)
    events._redis.cache_clear()
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            events.publish_on_commit([_event(plan_id, 1)])
        assert time.monotonic() - started < 0.2  # the commit's callbacks do not wait on the hung Redis
        deadline = time.monotonic() + 5
        while events._paused_until < started and time.monotonic() < deadline:
            time.sleep(0.05)  # the publisher gives up on it and pauses (before the patches are undone)
        assert events._paused_until > started  # it did try, and gave up
    finally:
        monkeypatch.undo()
        events._redis.cache_clear()
    listener = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(events.PUBSUB_CHANNEL)
    try:
        time.sleep(0.3)  # past the pause
        with django_capture_on_commit_callbacks(execute=True):
            events.publish_on_commit([_event(plan_id, 2)])
        assert _received(plan_id, listener, time.monotonic() + 3) == {2}
    finally:
        listener.close()


def test_events_committed_by_many_threads_at_once_all_go_out(monkeypatch: pytest.MonkeyPatch) -> None:
    plan_id = uuid.uuid4()
    monkeypatch.setattr(events, "_paused_until", 0.0)  # whatever an earlier test did to Redis
    listener = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(events.PUBSUB_CHANNEL)
    time.sleep(0.2)

    def commit(first: int) -> None:
        for event_id in range(first, first + 50):
            events._announce([_event(plan_id, event_id)])  # what each commit's callback does

    threads = [threading.Thread(target=commit, args=(n * 50,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _received(plan_id, listener, time.monotonic() + 3) == set(range(400))
    finally:
        listener.close()
