"""The guide's endpoints as written: ``POST /orchestrate`` with ``mode`` and ``GET /agents``.

``POST /orchestrate`` starts a plan like ``POST /api/plans/`` and then, by ``mode``:

* ``async`` (the default): 201 with the plan's id (``session_id``) and where to follow it;
* ``sync``: waits up to ``timeout`` seconds for the plan to end: 200 with its result, else 202 with the URLs.
  The wait is an async loop that polls the plan's row, borrowing a pooled connection only for each short
  read, so a waiting client holds neither a connection nor the web process's one thread for sync views;
* ``streaming``: answers with the plan's SSE stream under the guide's event names (``/workflow/{id}/stream``).

The DRF view (``orchestrate_start``) does auth, throttling, parsing, validation and the create; the async
view around it only waits or streams. drf-spectacular documents the DRF view (``cls`` is copied).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from agents.api import agent_list, agent_status
from common.api import request_user
from integrations import idempotency
from orchestrator import services
from orchestrator.models import Plan
from orchestrator.serializers import PlanCreateSerializer
from orchestrator.states import PLAN_TERMINAL

POLL_SECONDS = 0.2
SYNC_TIMEOUT_MAX = 60.0


class OrchestrateSerializer(PlanCreateSerializer):
    mode = serializers.ChoiceField(choices=["async", "sync", "streaming"], default="async", required=False)
    timeout = serializers.FloatField(default=30.0, required=False, min_value=0, max_value=SYNC_TIMEOUT_MAX,
                                     help_text="sync: seconds to wait for the plan to end")


STARTED = inline_serializer("OrchestrateStarted", {
    "session_id": serializers.UUIDField(), "status": serializers.CharField(), "plan_url": serializers.CharField(),
    "stream_url": serializers.CharField(), "page_url": serializers.CharField()})
FINISHED = inline_serializer("OrchestrateResult", {
    "session_id": serializers.UUIDField(), "status": serializers.CharField(),
    "result": serializers.JSONField(allow_null=True), "error_code": serializers.CharField(),
    "error_message": serializers.CharField(), "plan_url": serializers.CharField()})


def _links(plan_id: uuid.UUID, plan_status: str) -> dict[str, str]:
    return {"session_id": str(plan_id), "status": plan_status, "plan_url": f"/api/plans/{plan_id}/",
            "stream_url": f"/workflow/{plan_id}/stream", "page_url": f"/plans/{plan_id}/"}


@extend_schema(request=OrchestrateSerializer, responses={
    201: STARTED, 202: OpenApiResponse(STARTED, description="sync: still running after the timeout"),
    200: OpenApiResponse(FINISHED, description="sync: the plan ended within the timeout; streaming: "
                                               "text/event-stream with the guide's event names")},
               parameters=[idempotency.PARAMETER])
@api_view(["POST"])
@idempotency.idempotent
def orchestrate_start(request: Request) -> Response:
    """The guide's ``POST /orchestrate``: start a plan (the body of ``POST /api/plans/``), then answer by
    ``mode``: ``async`` 201 at once; ``sync`` waits up to ``timeout`` s (200 with the result, else 202);
    ``streaming`` answers with the plan's event stream."""
    body = OrchestrateSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    plan = services.plan_create(owner=request_user(request), request=data["request"], template=data["template"],
                                inputs=data["inputs"], steps=data.get("steps"),
                                budget_tokens=data.get("budget_tokens"), budget_cost=data.get("budget_cost"),
                                cap_tokens=data.get("cap_tokens"), cap_cost=data.get("cap_cost"))
    response = Response(_links(plan.id, plan.status), status=status.HTTP_201_CREATED)
    response.orchestrate = {"plan_id": plan.id, "mode": data["mode"], "timeout": data["timeout"]}  # type: ignore[attr-defined]
    return response


def _plan_state(plan_id: uuid.UUID) -> dict[str, Any] | None:
    """The plan's status and result if it has ended, else None. Gives its connection back at once."""
    try:
        row = Plan.objects.filter(id=plan_id).values("status", "result", "error_code", "error_message").first()
    finally:
        connection.close()
    return dict(row) if row and row["status"] in {str(s) for s in PLAN_TERMINAL} else None


async def _wait(plan_id: uuid.UUID, timeout: float) -> JsonResponse:
    deadline = time.monotonic() + timeout
    read = sync_to_async(_plan_state, thread_sensitive=False)
    while True:
        ended = await read(plan_id)
        if ended is not None:
            return JsonResponse({"session_id": str(plan_id), "status": ended["status"], "result": ended["result"],
                                 "error_code": ended["error_code"], "error_message": ended["error_message"],
                                 "plan_url": f"/api/plans/{plan_id}/"}, status=200)
        if time.monotonic() >= deadline:
            return JsonResponse(_links(plan_id, "running"), status=202)
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


@csrf_exempt  # as DRF's own views: DRF enforces CSRF itself, for session-authenticated requests only
async def orchestrate(request: HttpRequest) -> HttpResponseBase:
    from streams.views import open_stream

    response = await sync_to_async(orchestrate_start)(request)
    started = getattr(response, "orchestrate", None)
    if started is None:  # an error, or not a POST: DRF's answer as it is
        return response
    if started["mode"] == "sync":
        return await _wait(started["plan_id"], started["timeout"])
    if started["mode"] == "streaming":
        request.META["HTTP_LAST_EVENT_ID"] = "0"  # from the plan's first event
        return await sync_to_async(open_stream)(request, started["plan_id"], guide=True)
    return response


orchestrate.cls = orchestrate_start.cls  # type: ignore[attr-defined]  # for drf-spectacular
orchestrate.initkwargs = orchestrate_start.initkwargs  # type: ignore[attr-defined]


@extend_schema(responses=inline_serializer("GuideAgents", {"agents": inline_serializer("GuideAgent", {
    "id": serializers.CharField(), "capabilities": serializers.ListField(child=serializers.CharField()),
    "status": serializers.ChoiceField(choices=["healthy", "degraded", "unavailable"])}, many=True)}))
@api_view(["GET"])
def agents_guide(request: Request) -> Response:
    """The guide's ``GET /agents``: ``{"agents": [{"id", "capabilities", "status"}]}`` (status is the agent's
    health: its circuit breaker shared by all workers). ``GET /api/agents/`` has the full detail."""
    agents = []
    for spec in agent_list():
        agents.append({"id": spec.name, "capabilities": list(spec.capabilities),
                       "status": agent_status(spec.name).health})
    return Response({"agents": agents})
