"""A trivial DRF endpoint for ``bench/api.py`` (mounted only when ``BENCH_ENDPOINTS`` is on): the same
authentication, permission, throttling and middleware as every API view, and nothing else, so that requests
per second on a plan endpoint divided by requests per second here says what the plan endpoint itself costs."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response


@extend_schema(exclude=True)
@api_view(["GET"])
def ping(request: Request) -> Response:
    return Response({"ok": True})
