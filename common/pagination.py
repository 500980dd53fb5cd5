"""Limit/offset pagination with bounds: ``limit`` at most API_MAX_PAGE_SIZE, ``offset`` below 10^9 (past
2^63 Postgres' OFFSET overflows: a 500 before this)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from common.errors import DomainError

MAX_OFFSET = 10**9


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = int(getattr(settings, "API_MAX_PAGE_SIZE", 200))

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param, "")
        if raw.strip().isdigit() and len(raw.strip()) > 9:
            raise DomainError(f"offset must be below {MAX_OFFSET}", code="invalid")
        return super().get_offset(request)
