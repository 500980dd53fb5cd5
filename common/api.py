"""API error envelope: every error is ``{"error": {"code": ..., "message": ...}}``, never a stack trace."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import DomainError
from common.middleware import DATABASE_DOWN, RETRY_AFTER_SECONDS


def error_response(code: str, message: str, http_status: int, **extra: Any) -> Response:
    return Response({"error": {"code": code, "message": message, **extra}}, status=http_status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DATABASE_DOWN):
        unavailable = error_response("service.unavailable", "The database is unavailable for a moment; try "
                                     "again shortly.", status.HTTP_503_SERVICE_UNAVAILABLE)
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    if isinstance(exc, DomainError):
        return error_response(exc.code, exc.message, exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        return error_response("invalid", "The request body is not valid.", status.HTTP_400_BAD_REQUEST,
                              fields=exc.detail)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    return error_response(str(code) if isinstance(code, str) else "error", str(detail), response.status_code)


def request_user(request: Request) -> User:
    """The authenticated user of a request behind IsAuthenticated (never AnonymousUser)."""
    user = request.user
    if not isinstance(user, User):
        raise exceptions.NotAuthenticated()
    return user
