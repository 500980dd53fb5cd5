"""REST API for memory: thin views over memory.api, every call scoped to the requesting user.

``GET/POST /api/memory/``, ``GET/DELETE /api/memory/{id}/``, ``POST /api/memory/search/``.
Another owner's memory is a 404 and never appears in a list or search."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from common.api import request_user
from memory import api
from memory.errors import MemoryError_, MemoryNotFound
from memory.shapes import MemoryCreate, MemorySearch, parse


def _owner(request: Request) -> api.Owner:
    return api.Owner(user_id=request_user(request).pk)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise MemoryNotFound("no such memory") from None


def _int(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= top:
        raise MemoryError_(f"{name} must be an integer from 0 to {top}", code="memory.invalid")
    return int(raw)


@extend_schema(methods=["GET"], operation_id="api_memory_list", request=None, responses={200: dict})
@extend_schema(methods=["POST"], operation_id="api_memory_create", request=None, responses={200: dict, 201: dict})
@api_view(["GET", "POST"])
def memory_collection(request: Request) -> Response:
    """GET: your memories, newest first (``?kind=&agent=&limit=&offset=``). POST: remember ``text`` (a fact by
    default: a near-duplicate updates the existing fact; the answer says ``action``)."""
    owner = _owner(request)
    if request.method == "POST":
        body = parse(MemoryCreate, request.data)
        added = api.memory_add(owner=owner, text=body.text, kind=body.kind, agent=body.agent,
                               significance=body.significance, source=f"user:{owner.user_id}")
        return Response({**added.memory.as_dict(), "action": added.action, "similarity": added.similarity},
                        status=status.HTTP_201_CREATED if added.action == "add" else status.HTTP_200_OK)
    kind = request.query_params.get("kind") or None
    if kind and kind not in ("fact", "note", "episode"):
        raise MemoryError_("kind must be fact, note or episode", code="memory.invalid_kind")
    items = api.memory_list(owner=owner, kind=kind, agent=request.query_params.get("agent") or None,
                            limit=_int(request, "limit", 50, 500), offset=_int(request, "offset", 0, 10**9))
    return Response({"results": [m.as_dict() for m in items]})


@extend_schema(request=None, responses={200: dict, 204: None})
@api_view(["GET", "DELETE"])
def memory_detail(request: Request, memory_id: str) -> Response:
    owner = _owner(request)
    if request.method == "DELETE":
        api.memory_delete(owner=owner, memory_id=_uuid(memory_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(api.memory_get(owner=owner, memory_id=_uuid(memory_id)).as_dict())


@extend_schema(request=None, responses={200: dict})
@api_view(["POST"])
def memory_search(request: Request) -> Response:
    """``{"query", "k", "mode": hybrid|vector|text, "kinds", "agent", "since", "until"}`` -> ranked hits."""
    body = parse(MemorySearch, request.data)
    hits = api.memory_search(owner=_owner(request), query=body.query, k=body.k, mode=body.mode,
                             filters=api.Filters(kinds=tuple(body.kinds), agent=body.agent, since=body.since,
                                                 until=body.until))
    return Response({"results": [{**h.memory.as_dict(), "score": h.score, "similarity": h.similarity,
                                  "vector_rank": h.vector_rank, "text_rank": h.text_rank} for h in hits]})
