"""Live fan-out (streams/hub.py): many clients of one web process, and several web processes, each get every event
of a plan; a client that goes away is forgotten. The test plays the plan's worker ("held" steps, which no
worker takes), so every event is written while the clients are connected."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.db import connection
from redis import Redis
from rest_framework.authtoken.models import Token

from orchestrator import services
from orchestrator.events import last_event_id
from orchestrator.models import PlanEvent, Step
from streams import hub as hubs
from streams import limits, live
from tests.api.servers import web_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def _auth(user: Any) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _held_plan(user: Any) -> uuid.UUID:
    plan = services.plan_create(owner=user, request="fan out", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held", "depends_on": ["a"]}])
    return plan.id


def _run_held_steps(plan_id: uuid.UUID) -> None:
    """Play the worker: claim and finish a, then b (the plan completes). Runs in a thread of its own."""
    try:
        for key in ("a", "b"):
            step = Step.objects.get(plan_id=plan_id, key=key)
            assert services.step_claim(step_id=step.id, attempt=step.attempt, worker="test")
            assert services.step_succeed(step_id=step.id, attempt=step.attempt, output={"key": key}, usage=None)
    finally:
        connection.close()  # the thread's own connection: the test database is dropped at the end


async def _follow(client: httpx.AsyncClient, url: str, headers: dict[str, str], opened: asyncio.Event,
                  seen: list[int]) -> None:
    """Read one stream until plan.completed, noting each event's id."""
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "event: stream-open":
                opened.set()
            elif line.startswith("data: {"):
                event = json.loads(line[6:])
                seen.append(event["id"])
                if event["type"] == "plan.completed":
                    return


def _watch(urls: list[str], plan_id: uuid.UUID, headers: dict[str, str], clients: int,
           after: int) -> list[list[int]]:
    """``clients`` streams from ``after``, spread over ``urls``, connected before the steps run; what each saw."""

    async def main() -> list[list[int]]:
        seen: list[list[int]] = [[] for _ in range(clients)]
        opened = [asyncio.Event() for _ in range(clients)]
        limits_ = httpx.Limits(max_connections=clients + 5)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60), limits=limits_) as client:
            tasks = [asyncio.create_task(_follow(
                client, f"{urls[i % len(urls)]}/api/plans/{plan_id}/events/?lastEventId={after}", headers,
                opened[i], seen[i])) for i in range(clients)]
            await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), timeout=60)
            await asyncio.to_thread(_run_held_steps, plan_id)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        return seen

    return _in_a_loop_of_its_own(main)


def _in_a_loop_of_its_own[T](main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run in a thread: the session's browser tests (Playwright) leave a loop running in this one."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(lambda: asyncio.run(main())).result()


def test_many_clients_of_one_web_process_each_get_every_event(user: Any, test_agents: str) -> None:
    plan_id = _held_plan(user)
    cursor = last_event_id(plan_id=plan_id)
    with web_processes(1, {"STREAMS_PER_USER": "100"}, test_agents) as (web,):
        seen = _watch([web], plan_id, _auth(user), 60, cursor)

    stored = list(PlanEvent.objects.filter(plan_id=plan_id, id__gt=cursor).order_by("id").values_list("id", flat=True))
    assert len(stored) >= 6  # a and b: started, succeeded; b queued; the plan completed
    assert all(ids == stored for ids in seen), [len(ids) for ids in seen]


def test_two_web_processes_both_deliver_every_event(asgi_server: str, user: Any, test_agents: str) -> None:
    plan_id = _held_plan(user)
    cursor = last_event_id(plan_id=plan_id)
    with web_processes(1, {"STREAMS_PER_USER": "100"}, test_agents) as (other,):
        seen = _watch([asgi_server, other], plan_id, _auth(user), 6, cursor)

    stored = list(PlanEvent.objects.filter(plan_id=plan_id, id__gt=cursor).order_by("id").values_list("id", flat=True))
    assert all(ids == stored for ids in seen), [len(ids) for ids in seen]


def test_a_stream_that_ends_leaves_the_hub_and_frees_its_slot(user: Any) -> None:
    """In process: the generator a closed connection leaves behind is closed by Django; its watcher and its
    slot go with it."""
    plan_id = _held_plan(user)

    async def main() -> tuple[int, int, list[bool]]:
        hub = hubs.current()
        slots = [limits.slot_acquire(user.pk) for _ in range(3)]
        streams = [live.stream(user=user, plan_id=plan_id, after=0, guide=False, slot=str(slot)) for slot in slots]
        for stream in streams:
            opening = await anext(stream)
            assert b"event: stream-open" in opening and b"event: plan.created" in opening
        during = hub.count()
        await streams[0].aclose()  # what Django does when the client goes away
        await streams[1].aclose()
        after = hub.count()
        for slot in slots[:2]:
            limits.release(user.pk, str(slot))  # the response's closer
        redis = Redis.from_url(_redis_url())
        open_slots = [redis.zscore(f"streams:open:{user.pk}", str(slot)) is not None for slot in slots]
        await streams[2].aclose()
        limits.release(user.pk, str(slots[2]))
        if hub.task is not None:
            hub.task.cancel()  # this loop ends with the test
        return during, after, open_slots

    during, after, open_slots = _in_a_loop_of_its_own(main)
    assert (during, after, open_slots) == (3, 1, [False, False, True])


def _redis_url() -> str:
    from django.conf import settings

    return str(settings.REDIS_URL)
