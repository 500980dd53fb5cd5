"""How many streams a user may hold open at once, across every web process (a Redis sorted set per user).

A slot is a member scored by when it was last seen alive; a stream refreshes its slot as it sends (at least
every keep-alive, 20 s) and frees it when it ends. A web process that dies leaves slots that expire after
SLOT_TTL seconds without a refresh, so a crash cannot lock a user out for longer than that.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from functools import cache

from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse
from redis import Redis
from redis.exceptions import RedisError

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
    except RedisError:
        return slot
    return slot


def _refresh(user_id: object, slot: str) -> None:
    try:
        _redis().zadd(_key(user_id), {slot: time.time()}, xx=True)
    except RedisError:
        pass


def _release(user_id: object, slot: str) -> None:
    try:
        _redis().zrem(_key(user_id), slot)
    except RedisError:
        pass


def holding_slot(response: HttpResponseBase, user_id: object, slot: str) -> HttpResponseBase:
    """The response, its stream refreshing the slot while it sends and freeing it when it ends."""
    if not (isinstance(response, StreamingHttpResponse) and response.is_async):
        _release(user_id, slot)
        return response
    chunks = response.streaming_content

    async def held() -> AsyncIterator[bytes]:
        last = time.monotonic()
        try:
            async for chunk in chunks:  # type: ignore[union-attr]
                if time.monotonic() - last > REFRESH_EVERY:
                    _refresh(user_id, slot)
                    last = time.monotonic()
                yield chunk  # type: ignore[misc]
        finally:
            _release(user_id, slot)

    response.streaming_content = held()
    # Django closes the response when the client goes away (ASGI disconnect) even though the generator above
    # may only be finalised later: free the slot then.
    response._resource_closers.append(lambda: _release(user_id, slot))  # type: ignore[attr-defined]
    return response
