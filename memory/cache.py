"""Redis cache of recalled context: what a (owner, agent, query) recalled, sealed with the memory key ring
(the cache holds no plaintext either), for MEMORY_CACHE_SECONDS. Each owner has a generation token;
any write of the owner's memory replaces it, so stale entries are never read (they expire on their own).
Forgetting an owner deletes every key of theirs. Redis being down only means no cache."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from functools import cache
from typing import Any

from django.conf import settings
from redis import Redis
from redis.exceptions import RedisError

from memory import crypto
from memory.scope import Owner

log = logging.getLogger("memory")
PREFIX = "memory:ctx"


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def _generation(owner: Owner) -> str:
    """A random token per owner, replaced on every write: a stale entry (even one left by an earlier database
    whose user ids repeat) is never read again."""
    client, key = _redis(), f"{PREFIX}:{owner.cache_tag}:gen"
    value = client.get(key)
    if value is None:
        client.set(key, uuid.uuid4().hex, nx=True)
        value = client.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(owner: Owner, generation: str, parts: tuple[Any, ...]) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{PREFIX}:{owner.cache_tag}:{generation}:{digest}"


def get(owner: Owner, parts: tuple[Any, ...]) -> Any | None:
    try:
        raw = _redis().get(_key(owner, _generation(owner), parts))
    except RedisError as exc:
        log.warning("memory.cache.unavailable", extra={"error": str(exc)})
        return None
    return json.loads(crypto.unseal(raw if isinstance(raw, bytes) else raw.encode())) if raw else None


def put(owner: Owner, parts: tuple[Any, ...], value: Any) -> None:
    try:
        _redis().set(_key(owner, _generation(owner), parts), crypto.seal(json.dumps(value, default=str)),
                     ex=settings.MEMORY_CACHE_SECONDS)
    except RedisError as exc:
        log.warning("memory.cache.unavailable", extra={"error": str(exc)})


def invalidate(owner: Owner) -> None:
    try:
        _redis().set(f"{PREFIX}:{owner.cache_tag}:gen", uuid.uuid4().hex)
    except RedisError as exc:
        log.warning("memory.cache.unavailable", extra={"error": str(exc)})


def forget(owner: Owner) -> int:
    """Delete every cache key of the owner; returns how many."""
    client = _redis()
    keys = list(client.scan_iter(match=f"{PREFIX}:{owner.cache_tag}:*", count=500))
    return int(client.delete(*keys)) if keys else 0


def keys_of(owner: Owner) -> list[str]:
    return [k.decode() for k in _redis().scan_iter(match=f"{PREFIX}:{owner.cache_tag}:*", count=500)]
