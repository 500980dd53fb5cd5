"""The API's error envelope at the HTTP layer: whatever Django itself answers under the API's paths (its
404 for an unknown URL, 400 for a bad Host or a suspicious request, 405, 413, a 500 page) is turned into
``{"error": {"code", "message"}}``, and a query string or body that the edge refuses (common/edge.py)
never reaches a view. API data is never cached (``Cache-Control: no-store``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from common import edge

log = logging.getLogger("common")

API_PREFIXES = ("/api/", "/orchestrate", "/agents", "/workflow/", "/health", "/o/")

_CODES = {400: "bad_request", 401: "not_authenticated", 403: "permission_denied", 404: "not_found",
          405: "method_not_allowed", 406: "not_acceptable", 413: "request.too_large",
          415: "unsupported_media_type", 429: "throttled", 500: "server_error", 503: "unavailable"}


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class ApiEdgeMiddleware:
    """Outermost middleware for the API's paths (see the module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api(request.path):
            return self.get_response(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            response = self._as_json(response)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response

    def _refuse(self, request: HttpRequest) -> HttpResponse | None:
        if _content_length(request) > edge.max_body_bytes():
            return json_error("request.too_large", f"the body may be at most {edge.max_body_bytes()} bytes", 413)
        for key, values in request.GET.lists():
            if edge.unstorable(key) or any(edge.unstorable(v) for v in values):
                return json_error("request.unstorable_text",
                                  "query parameters may not contain U+0000 or unpaired surrogates", 400)
        return None

    def _as_json(self, response: HttpResponse) -> HttpResponse:
        status = response.status_code
        reason = getattr(response, "reason_phrase", "") or "error"
        replaced = json_error(_CODES.get(status, "error"), reason, status)
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if response.has_header(header):
                replaced[header] = response[header]
        return replaced

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view's unhandled exception under the API: logged with its stack, answered as JSON (no page)."""
        if not is_api(request.path):
            return None
        log.error("common.api.unhandled", exc_info=exception, extra={"path": request.path})
        return json_error("server_error", "The server failed to answer this request.", 500)

