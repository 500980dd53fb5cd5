"""How many streams a user may hold open at once, across every web process (a Redis sorted set per user).

A slot is a member scored by when it was last seen alive; each web process refreshes the slots of its open
streams every REFRESH_EVERY seconds (one pipelined round trip) and frees a stream's slot when it ends. A web
process that dies leaves slots that expire after SLOT_TTL seconds without a refresh,
so a crash cannot lock a user out for longer than that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import cache

from django.conf import settings
from django.http import HttpResponseBase
from redis import Redis
from redis.exceptions import RedisError

# redis-py 8 can raise ValueError ("I/O operation on closed file") from a handshake that timed out: treated as
# Redis being unreachable, like its own errors.
_UNREACHABLE = (RedisError, OSError, ValueError)

SLOT_TTL = 90.0
REFRESH_EVERY = 15.0


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _key(user_id: object) -> str:
    return f"streams:open:{user_id}"


def slot_acquire(user_id: object) -> str | None:
    """A slot id, or None when the user already holds STREAMS_PER_USER open streams. Fails open when Redis
    is unreachable (the stream itself would then only serve stored events)."""
    limit = int(getattr(settings, "STREAMS_PER_USER", 10))
    slot = uuid.uuid4().hex
    now = time.time()
    key = _key(user_id)
    try:
        pipe = _redis().pipeline()
        pipe.zremrangebyscore(key, 0, now - SLOT_TTL)
        pipe.zadd(key, {slot: now})
        pipe.zcard(key)
        pipe.expire(key, int(SLOT_TTL) * 2)
        count = pipe.execute()[2]
        if count > limit:
            _redis().zrem(key, slot)
            return None
    except _UNREACHABLE:
        return slot
    return slot


def _refresh_all(held: list[tuple[str, object]]) -> None:
    """Refresh the given slots in one round trip (a thread's work: never on the event loop)."""
    now = time.time()
    try:
        pipe = _redis().pipeline(transaction=False)
        for slot, user_id in held:
            pipe.zadd(_key(user_id), {slot: now}, xx=True)
        pipe.execute()
    except _UNREACHABLE:
        pass


def release(user_id: object, slot: str) -> None:
    try:
        _redis().zrem(_key(user_id), slot)
    except _UNREACHABLE:
        pass


# This process's open streams (slot -> user id), refreshed together by one task per event loop: one Redis round
# trip every REFRESH_EVERY seconds in a thread, instead of a blocking call per stream on the loop (with a
# thousand streams those stalled the loop for whole seconds).
_held: dict[str, object] = {}
_keepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


async def _keep_refreshing() -> None:
    while True:
        await asyncio.sleep(REFRESH_EVERY)
        if _held:
            await asyncio.to_thread(_refresh_all, list(_held.items()))


def hold(user_id: object, slot: str) -> None:
    """Keep ``slot`` alive while its stream is open (call on the stream's event loop)."""
    _held[slot] = user_id
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(loop)
    if keeper is None or keeper.done():
        _keepers[loop] = loop.create_task(_keep_refreshing(), name="streams.slots")


def unhold(slot: str) -> None:
    _held.pop(slot, None)


def release_on_close(response: HttpResponseBase, user_id: object, slot: str) -> None:
    """Free the slot when Django closes the response: in a thread, off the event loop, and whatever ended the
    stream (the client's disconnect included)."""
    response._resource_closers.append(lambda: release(user_id, slot))  # type: ignore[attr-defined]
