"""``Idempotency-Key`` on every create: a retried POST gets the first answer again (and creates nothing),
the same key with a different request is a 422, and a retry while the first is still running is a 409.

The key is scoped to the user; the request is identified by a SHA-256 of its method, path and canonical
JSON body. The record is written (committed) before the create runs, so two racing requests with one key
cannot both create: the second finds the first's record. A create that fails with a 5xx or an exception
leaves no record, so it may be retried; 2xx and 4xx answers are kept for IDEMPOTENCY_TTL (24 h).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from common.api import error_response, request_user
from integrations.models import IdempotencyRecord

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

PARAMETER = OpenApiParameter(
    HEADER, {"type": "string", "minLength": 1, "maxLength": 255},
    OpenApiParameter.HEADER, required=False,
    description="Retrying with the same key returns the first answer; a different body with it is a 422.")


def _ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "IDEMPOTENCY_TTL", 24 * 3600)))


def request_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _claim(request: Request, key: str) -> IdempotencyRecord | Response:
    """Our own fresh record (the create may run), or the answer to give instead."""
    user, digest = request_user(request), request_hash(request)
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=timezone.now() - _ttl()).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(user=user, key=key, request_hash=digest)
    except IntegrityError:
        pass
    found = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if found is None:  # expired and removed in between: the caller may retry
        return error_response("idempotency.in_progress", "retry: the key's first request was just cleared", 409)
    if found.request_hash != digest:
        return error_response("idempotency.key_reused",
                              f"{HEADER} {key!r} was used for a different request", 422)
    if found.status_code is None:
        return error_response("idempotency.in_progress", f"the first request with {HEADER} {key!r} is still "
                              "running; retry in a moment", 409)
    replay = Response(found.response, status=found.status_code)
    replay["Idempotent-Replayed"] = "true"
    return replay


def idempotent[V: Callable[..., Response]](view: V) -> V:
    """Wrap a create (a DRF view method or function taking the request): honour ``Idempotency-Key``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        request = next(a for a in args if isinstance(a, Request))
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not _VALID_KEY.match(key):
            return error_response("idempotency.bad_key", f"{HEADER} must be 1 to 255 visible ASCII characters",
                                  400)
        claimed = _claim(request, key)
        if isinstance(claimed, Response):
            return claimed
        try:
            response = view(*args, **kwargs)
        except BaseException:
            claimed.delete()
            raise
        if response.status_code >= 500:
            claimed.delete()
        else:
            claimed.status_code = response.status_code
            claimed.response = json.loads(json.dumps(response.data, cls=JSONEncoder))
            claimed.save(update_fields=["status_code", "response"])
        return response

    return wrapper  # type: ignore[return-value]
