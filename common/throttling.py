"""API throttles: DRF's, counted in the default cache (Redis), so a limit holds across every web process.

A throttled request gets 429 ``throttled`` with ``Retry-After`` (seconds). DRF's throttle reads and writes
its history without a lock: two processes racing on one user's last free request can both pass, so a limit
may be overshot by about the number of web processes, never more. With Redis unreachable the throttles let
requests through (logged): the API's own checks still hold, and a 500 would be worse.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from organisations.api import tenancy_of

log = logging.getLogger("common")


class UserThrottle(UserRateThrottle):
    """Per authenticated user (``API_THROTTLE_USER``, default 1200/min)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError:
            log.warning("common.throttle.unavailable", exc_info=True)
            return True


class AnonThrottle(AnonRateThrottle):
    """Per client address for unauthenticated requests (``API_THROTTLE_ANON``, default 60/min)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError:
            log.warning("common.throttle.unavailable", exc_info=True)
            return True


class OrganisationThrottle(SimpleRateThrottle):
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

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError:
            log.warning("common.throttle.unavailable", exc_info=True)
            return True
