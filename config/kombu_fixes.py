"""A fix for kombu's Redis transport, applied when the Celery app loads (config/celery.py).

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
