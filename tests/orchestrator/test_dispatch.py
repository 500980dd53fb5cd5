"""Handing a group of steps to the broker (services/dispatch.py): a few growing batches, one round trip each,
so the first steps are in the queue while the rest are still being built."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings

from orchestrator import services
from orchestrator.services.dispatch import BATCH_SIZES

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_wide_plan_goes_to_the_broker_in_growing_batches(user: Any) -> None:
    """40 steps on a queue no worker consumes: while each message is built, the queue already holds every
    message of the batches before its own (4, then 16, then the last 20), and in the end all 40."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = broker.llen("held")
    queued_while_building: list[int] = []

    def note(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers and headers.get("task") == "orchestrator.run_step":
            queued_while_building.append(broker.llen("held") - before)

    before_task_publish.connect(note, weak=False)
    try:
        services.plan_create(owner=user, request="wide", steps=[{"key": f"s{i}", "agent": "held"} for i in range(40)])
    finally:
        before_task_publish.disconnect(note)

    assert BATCH_SIZES[:2] == (4, 16)
    assert queued_while_building == [0] * 4 + [4] * 16 + [20] * 20
    assert broker.llen("held") - before == 40


def test_sending_one_plan_after_another_builds_no_redis_client_per_message(user: Any, monkeypatch: Any) -> None:
    """kombu built a redis.Redis (~0.3 ms of CPU) for every message sent outside a worker's event loop;
    config/kombu_fixes.py keeps one per channel. Ten one-step plans, ten messages: at most one client built."""
    built: list[object] = []
    init = redis.Redis.__init__

    def counted(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        init(self, *args, **kwargs)

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = broker.llen("held")
    monkeypatch.setattr(redis.Redis, "__init__", counted)
    for i in range(10):
        services.plan_create(owner=user, request=f"one {i}", steps=[{"key": "a", "agent": "held"}])
    monkeypatch.undo()

    assert broker.llen("held") - before == 10
    assert len(built) <= 1


def test_a_steps_message_is_pushed_onto_its_queue_without_declaring_it(user: Any, monkeypatch: Any) -> None:
    """Celery declared the queue at every publish (a third of a send's CPU); on Redis a message to a queue is a
    push onto its list, which needs no declaration. Five steps: five messages on the queue, no declaration."""
    import kombu.messaging

    declared: list[object] = []
    declare = kombu.messaging.maybe_declare
    monkeypatch.setattr(kombu.messaging, "maybe_declare", lambda entity, *a, **k: declared.append(entity)
                        or declare(entity, *a, **k))
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = broker.llen("held")

    services.plan_create(owner=user, request="five", steps=[{"key": f"s{i}", "agent": "held"} for i in range(5)])

    assert broker.llen("held") - before == 5 and declared == []
