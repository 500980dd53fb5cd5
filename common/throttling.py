"""API throttles counted in Redis, so a limit holds across every web process.

DRF's own throttles keep each client's request history (a list of timestamps) in the cache: every request reads
the whole list, unpickles it, appends and writes it back. At the default 1,200 requests a minute that is up to
1,200 floats moved twice per request, without a lock (racing processes overshot the limit). Here a limit is one
Redis counter per client and window: the window opens with the client's first request, and each request is one
script run in Redis (open the window if absent, count, read what is left of it). INCR is atomic, so a limit is
never overshot, whatever the number of web processes.

A throttled request gets 429 ``throttled`` with ``Retry-After`` (what is left of the window, in seconds). With
Redis unreachable the throttles let requests through (logged): the API's own checks still hold, and a 500 would
be worse.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.conf import settings
from redis import Redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import RedisError
from redis.retry import Retry
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from organisations.api import tenancy_of

log = logging.getLogger("common")

KEY_PREFIX = "cache:rl:"  # under the cache's prefix: tests forget throttles by "cache:*throttle_*"


# Open the window if absent, count, read what is left of it: one script, so one command and one round trip
# (a MULTI/EXEC pipeline of the same three costs five commands' parsing on each side).
_COUNT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
return {redis.call('INCR', KEYS[1]), redis.call('TTL', KEYS[1])}
"""


@cache
def _counter() -> Script:
    redis = Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    return redis.register_script(_COUNT)


def _count(key: str, window: int) -> tuple[int, int]:
    """This request's number in the client's current window, and the seconds left in that window."""
    count, left = _counter()(keys=[key], args=[window])
    return int(count), int(left) if left > 0 else window


class _Counted(SimpleRateThrottle):
    """DRF's rate parsing and client keys; the counting above instead of the history list."""

    left = 0
    num_requests: int  # set by SimpleRateThrottle.__init__ from the rate
    duration: int

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            count, self.left = _count(KEY_PREFIX + key, int(self.duration))
        except (RedisError, OSError, ValueError):  # ValueError: redis-py after a timed-out handshake
            log.warning("common.throttle.unavailable", exc_info=True)
            return True
        return count <= int(self.num_requests)

    def wait(self) -> float:
        return float(max(1, self.left))


class UserThrottle(_Counted, UserRateThrottle):
    """Per authenticated user (``API_THROTTLE_USER``, default 1200/min)."""


class AnonThrottle(_Counted, AnonRateThrottle):
    """Per client address for unauthenticated requests (``API_THROTTLE_ANON``, default 60/min)."""


class OrganisationThrottle(_Counted, SimpleRateThrottle):
    """Per organisation: all its members' requests together (``API_THROTTLE_ORGANISATION``, default
    6000/min), so one tenant cannot take the API from the others. Anonymous requests are not counted here, nor
    those of the default organisation: it is not a tenant but everyone nobody placed in one (an install without
    organisations keeps its per-user limits only)."""

    scope = "organisation"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if not (user and user.is_authenticated):
            return None
        tenancy = tenancy_of(user)
        if tenancy.organisation == settings.DEFAULT_ORGANISATION_SLUG:
            return None
        return self.cache_format % {"scope": self.scope, "ident": tenancy.organisation_id}
