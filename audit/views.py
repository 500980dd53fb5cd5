"""``GET /api/audit/``: the audit trail of the reader's organisation, for its admins and for staff with the
"view audit entry" permission (superusers: every organisation's); ``?plan=<id>``, ``?actor=<username>``,
``?action=`` filter it."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, viewsets

from audit.models import AuditEntry
from common.errors import DomainError
from orchestrator import selectors
from organisations.api import member_ids, tenancy_of


class AuditEntrySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor_id", "actor_name", "action", "target", "plan_id", "status_code", "ip",
                  "user_agent", "data"]


class CanViewAudit(permissions.BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(tenancy_of(user).is_admin or (user.is_staff and user.has_perm("audit.view_auditentry")))


def _of_organisation(user: Any) -> Q:
    """issue 11: what the actor did in the reader's organisation, and (for entries written without an
    organisation: from plans' events, or older than organisations) what happened to its plans or was done
    by its members."""
    organisation_id = tenancy_of(user).organisation_id
    return Q(organisation_id=organisation_id) | Q(
        Q(plan_id__in=selectors.plan_ids_of_organisation(organisation_id=organisation_id))
        | Q(plan_id__isnull=True, actor_id__in=member_ids(organisation_id=organisation_id)),
        organisation_id__isnull=True)


@extend_schema(parameters=[OpenApiParameter("plan", str), OpenApiParameter("actor", str),
                           OpenApiParameter("action", str)])
class AuditViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    serializer_class = AuditEntrySerializer
    permission_classes = [permissions.IsAuthenticated, CanViewAudit]

    def get_queryset(self) -> QuerySet[AuditEntry]:
        entries = AuditEntry.objects.all()
        if not self.request.user.is_superuser:
            entries = entries.filter(_of_organisation(self.request.user))
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
