"""Every write through the API or the admin (POST, PUT, PATCH, DELETE) lands in the audit trail: who, what
(method and path), the answer's status, when, and from where (client address and user agent)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from audit.services import audit_record
from common.api import UUID_PATTERN
from common.middleware import is_api
from organisations.api import tenancy_of

log = logging.getLogger("audit")

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PLAN_IN_PATH = re.compile(rf"/(?:plans|workflow)/({UUID_PATTERN})")


class AuditMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method in _WRITES and (is_api(request.path) or request.path.startswith("/admin/")):
            self._record(request, response)
        return response

    def _record(self, request: HttpRequest, response: HttpResponse) -> None:
        user = getattr(request, "user", None)  # DRF sets the token's user on the Django request too
        authenticated = bool(user is not None and user.is_authenticated)
        found = _PLAN_IN_PATH.search(request.path)
        area = "admin" if request.path.startswith("/admin/") else "api"
        try:
            audit_record(action=f"{area}.{(request.method or '').lower()}",
                         actor_id=user.pk if authenticated and user is not None else None,
                         actor_name=user.get_username() if authenticated and user is not None else "",
                         target=request.path, plan_id=found.group(1) if found else None,  # type: ignore[arg-type]
                         organisation_id=tenancy_of(user).organisation_id if authenticated else None,  # type: ignore[arg-type]
                         status_code=response.status_code, ip=request.META.get("REMOTE_ADDR") or None,
                         user_agent=request.META.get("HTTP_USER_AGENT", ""))
        except DatabaseError:  # the answer stands; the failure to audit is loud in the log
            log.exception("audit.record_failed", extra={"path": request.path})
