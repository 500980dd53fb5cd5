"""``GET /api/audit/``: the audit trail, for staff with the "view audit entry" permission (organisation
admins, once organisations exist); ``?plan=<id>``, ``?actor=<username>``, ``?action=`` filter it."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, viewsets

from audit.models import AuditEntry
from common.errors import DomainError


class AuditEntrySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor_id", "actor_name", "action", "target", "plan_id", "status_code", "ip",
                  "user_agent", "data"]


class CanViewAudit(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm("audit.view_auditentry"))


@extend_schema(parameters=[OpenApiParameter("plan", str), OpenApiParameter("actor", str),
                           OpenApiParameter("action", str)])
class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    serializer_class = AuditEntrySerializer
    permission_classes = [permissions.IsAuthenticated, CanViewAudit]

    def get_queryset(self) -> QuerySet[AuditEntry]:
        entries = AuditEntry.objects.all()
        params = self.request.query_params
        if params.get("plan"):
            try:
                entries = entries.filter(plan_id=uuid.UUID(params["plan"]))
            except ValueError:
                raise DomainError("plan must be a plan id", code="invalid") from None
        if params.get("actor"):
            entries = entries.filter(actor_name=params["actor"])
        if params.get("action"):
            entries = entries.filter(action=params["action"])
        return entries
