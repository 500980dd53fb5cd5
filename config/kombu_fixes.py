"""Two fixes for kombu's Redis transport, applied when the Celery app loads (config/celery.py): a worker that
dies when Redis goes away, and a client built for every message sent (at the end).

kombu 5.7.0: when Redis goes away while a worker holds acks_late messages, the consumer closes its
connection, and closing the channel tries to put the unacknowledged messages back through a transport whose
client is already gone: ``AttributeError: 'NoneType' object has no attribute 'hostname'`` escapes
``maybe_close_channel`` (which only ignores connection errors) and the worker exits ("Unrecoverable error").
Here that case raises Redis's ConnectionError instead: a connection error, ignored there like the others,
so the consumer goes on to reconnect. Nothing is lost by skipping the restore: the broker is unreachable at
that moment anyway, and the database decides what runs (the reconciler sends every queued step again).

tests/test_chaos.py kills Redis under two workers holding tasks; it fails without this fix. The guard
below refuses another kombu version until someone has checked whether the fix is still needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

PATCHED_VERSION = "5.7.0"

if (installed := metadata.version("kombu")) != PATCHED_VERSION:
    raise RuntimeError(f"config/kombu_fixes.py patches kombu {PATCHED_VERSION}, not {installed}: check "
                       "whether the Redis transport still fails closing a channel without a client, then update it")

_connparams = kombu_redis.Channel._connparams  # type: ignore[attr-defined]


def _connparams_or_connection_error(self: Any, asynchronous: bool = False) -> Any:
    if self.connection.client is None:
        raise RedisConnectionError("the broker connection is closed")
    return _connparams(self, asynchronous=asynchronous)


kombu_redis.Channel._connparams = _connparams_or_connection_error  # type: ignore[attr-defined]


# Second, for speed: kombu builds a redis.Redis client for every publish made outside a worker's event loop
# (``Channel.conn_or_acquire``): ~0.3 ms of CPU with redis-py 8 (it copies the response callbacks), a third of
# what sending one message costs. They all use the channel's one connection pool, so one client per channel
# serves them all: a redis-py client is safe to share between threads (each command borrows a pooled
# connection). Rebuilt if the channel's pool is replaced.
@contextmanager
def _conn_or_acquire_kept(self: Any, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    kept = self.__dict__.get("_kept_client")
    if kept is None or kept.connection_pool is not self.pool:
        kept = self.__dict__["_kept_client"] = self._create_client()
    yield kept


kombu_redis.Channel.conn_or_acquire = _conn_or_acquire_kept  # type: ignore[method-assign]
