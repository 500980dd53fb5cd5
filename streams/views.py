"""Live progress over HTTP: the SSE stream of a plan, the snapshot a client loads before it, and the live plan
page. Thin: authorization is ``selectors.plan_get``, events are ``orchestrator.events``, streaming is
``streams.live`` (fed by the process's ``streams.hub``)."""

from __future__ import annotations

import logging
import re
import uuid
from typing import cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from common.errors import DomainError, NotFound
from orchestrator import events, selectors
from orchestrator.serializers import PlanDetailSerializer
from streams import limits, live
from streams.pages import page_context

log = logging.getLogger("streams")

# What a client may send back as Last-Event-ID (header) or ?lastEventId=: the id field it received
# ("plan-<uuid>:<n>", the library's format) or a bare event id (e.g. a snapshot's last_event_id).
_LAST_EVENT_ID = re.compile(r"^(?:plan-[0-9a-f-]{36}:)?(\d{1,19})$")


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _stream_user(request: HttpRequest) -> None:
    """Session auth comes from the middleware; ``Authorization: Token`` is checked here (DRF's)."""
    if not request.user.is_authenticated:
        found = TokenAuthentication().authenticate(request)  # type: ignore[arg-type]
        if found is not None:
            request.user = found[0]


def _resume_point(request: HttpRequest, plan_id: uuid.UUID) -> tuple[int | None, str | None]:
    """The event id to resume after (None: from now on), or an error message if what was given is not one."""
    channel = events.channel_for(plan_id)
    header = request.META.get("HTTP_LAST_EVENT_ID")
    params = [v for v in request.GET.getlist("lastEventId") if v]
    given = header or (params[-1] if params else None)
    if not given:
        return None, None
    match = _LAST_EVENT_ID.match(given)
    if not match or (":" in given and not given.startswith(channel + ":")):
        return None, f"Last-Event-ID must be an event id of this plan, not {given[:80]!r}"
    return int(match.group(1)), None


@require_GET
def plan_stream(request: HttpRequest, plan_id: uuid.UUID) -> HttpResponseBase:
    return open_stream(request, plan_id)


def open_stream(request: HttpRequest, plan_id: uuid.UUID, *, guide: bool = False) -> HttpResponseBase:
    """GET /api/plans/{id}/events/ (and, with ``guide``, /workflow/{id}/stream under the guide's event names):
    the plan's events over SSE.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``) with exactly the stored events after it; with
    neither, starts at the plan's newest event. 401 without credentials, 404 for a plan the user may not
    see (its existence is not revealed), 400 for a malformed resume id. Holds no DB connection while open.
    """
    try:
        if "es-meta" in request.GET or "channel" in request.GET:
            return _error("stream.bad_parameter", "es-meta and channel are not accepted here", 400)
        try:
            _stream_user(request)
        except exceptions.AuthenticationFailed as exc:
            return _error("authentication_failed", str(exc.detail), 401)
        if not request.user.is_authenticated:
            return _error("not_authenticated", "Authentication credentials were not provided.", 401)
        try:
            plan = selectors.plan_get(user=cast(User, request.user), plan_id=plan_id)
        except NotFound as exc:
            return _error(exc.code, exc.message, exc.http_status)
        after, problem = _resume_point(request, plan.id)
        if problem:
            return _error("stream.bad_last_event_id", problem, 400)
    finally:
        connection.close()  # give the connection back: the response may stay open for hours
    slot = limits.slot_acquire(request.user.pk)
    if slot is None:
        response = _error("stream.too_many", "too many open streams for this user; close one first", 429)
        response["Retry-After"] = "5"
        return response
    log.info("streams.stream.opened", extra={"plan_id": str(plan.id), "user_id": request.user.pk})
    user = cast(User, request.user)
    streaming = live.LiveResponse(lambda direct: live.stream(user=user, plan_id=plan.id, after=after, guide=guide,
                                                             slot=slot, direct=direct))
    limits.release_on_close(streaming, request.user.pk, slot)
    return streaming


@require_GET
def workflow_stream(request: HttpRequest, plan_id: uuid.UUID) -> HttpResponseBase:
    """GET /workflow/{id}/stream: the same stream under the guide's event names (streams/guide.py)."""
    return open_stream(request, plan_id, guide=True)


@extend_schema(responses=inline_serializer("PlanSnapshot", {
    "last_event_id": serializers.IntegerField(),
    "approvals": serializers.ListField(child=serializers.DictField()),
    "plan": PlanDetailSerializer(),
}))
@api_view(["GET"])
def plan_snapshot(request: Request, plan_id: uuid.UUID) -> Response:
    """GET /api/plans/{id}/snapshot/: the plan with its steps, its open approvals, and ``last_event_id``,
    where to start streaming. The id is read before the plan, so applying the events after it on top of
    the snapshot can only bring it up to date."""
    user = cast(User, request.user)  # IsAuthenticated
    plan = selectors.plan_get(user=user, plan_id=plan_id)
    cursor = events.snapshot_cursor(plan_id=plan.id)
    plan = selectors.plan_get(user=user, plan_id=plan_id)  # read after the cursor, on purpose
    return Response({"last_event_id": cursor, "approvals": events.pending_approvals(plan_id=plan.id),
                     "plan": PlanDetailSerializer(plan).data})


HISTORY_PAGE = 1000


@extend_schema(responses=inline_serializer("PlanHistory", {
    "events": serializers.ListField(child=serializers.DictField()),
    "next_after": serializers.IntegerField(allow_null=True),
}))
@api_view(["GET"])
def plan_history(request: Request, plan_id: uuid.UUID) -> Response:
    """GET /api/plans/{id}/history/?after=N: the plan's stored events after id N (default 0), oldest first,
    up to 1000 a page; ``next_after`` is where the next page starts (null on the last page). A page that
    opens late loads its events list from here, then streams from the snapshot's ``last_event_id``."""
    user = cast(User, request.user)  # IsAuthenticated
    plan = selectors.plan_get(user=user, plan_id=plan_id)
    raw = request.query_params.get("after", "0")
    if not raw.isdigit() or len(raw) > 19:
        raise DomainError(f"after must be an event id, not {raw[:40]!r}", code="stream.bad_after")
    found = events.events_after(plan_id=plan.id, after_id=int(raw), limit=HISTORY_PAGE + 1)
    more = len(found) > HISTORY_PAGE
    found = found[:HISTORY_PAGE]
    return Response({"events": found, "next_after": found[-1]["id"] if more else None})


@login_required
@require_GET
def plan_page(request: HttpRequest, plan_id: uuid.UUID) -> HttpResponse:
    """GET /plans/{id}/: the live plan page (the DAG, coloured by state, updated over SSE)."""
    try:
        plan = selectors.plan_get(user=cast(User, request.user), plan_id=plan_id)
    except NotFound:
        raise Http404("no such plan") from None
    config = {"planId": str(plan.id), "snapshotUrl": f"/api/plans/{plan.id}/snapshot/",
              "historyUrl": f"/api/plans/{plan.id}/history/", "streamUrl": f"/api/plans/{plan.id}/events/",
              "planUrl": f"/api/plans/{plan.id}/", "approvalsUrl": f"/api/approvals/?status=pending&plan={plan.id}",
              "decideUrl": "/api/approvals/{id}/{decision}/", "csrfToken": get_token(request),
              "canDecide": request.user.has_perm("approvals.decide_approval"),
              "user": request.user.get_username(), "owner": plan.owner.get_username()}
    return render(request, "streams/plan_live.html", {**page_context(request), "plan": plan, "config": config})
