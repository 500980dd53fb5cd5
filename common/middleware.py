"""While the database cannot be reached (restarting, failing over, the pool out of connections), every
request gets a 503 with Retry-After (a JSON error under /api/), never a 500 with a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger("common")

RETRY_AFTER_SECONDS = 5
DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable(request: HttpRequest, exc: BaseException) -> HttpResponse:
    log.warning("common.database_unavailable", extra={"path": request.path, "error": repr(exc)})
    message = "The database is unavailable for a moment; try again shortly."
    response: HttpResponse
    if request.path.startswith("/api/") or request.headers.get("Accept", "").startswith("application/json"):
        response = JsonResponse({"error": {"code": "service.unavailable", "message": message}}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable(request, exception) if isinstance(exception, DATABASE_DOWN) else None
