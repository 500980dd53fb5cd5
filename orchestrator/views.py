"""REST API for plans: thin views over services and selectors."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api import UUID_PATTERN, request_user
from integrations import idempotency
from orchestrator import selectors, services
from orchestrator.models import Plan
from orchestrator.serializers import PlanCreateSerializer, PlanDetailSerializer, PlanSerializer


def _create(request: Request, data: dict[str, Any]) -> Plan:
    return services.plan_create(owner=request_user(request), request=data["request"], template=data["template"],
                                inputs=data["inputs"], steps=data.get("steps"),
                                budget_tokens=data.get("budget_tokens"), budget_cost=data.get("budget_cost"),
                                cap_tokens=data.get("cap_tokens"), cap_cost=data.get("cap_cost"))


class PlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Plans: create one from a template, from explicit steps, or from free text (the LLM planner)."""

    lookup_value_regex = UUID_PATTERN

    def get_queryset(self):  # type: ignore[no-untyped-def]
        plans = selectors.plans_visible(user=request_user(self.request))
        if self.action == "retrieve":
            return plans.prefetch_related("steps")
        status_filter = self.request.query_params.get("status")
        return plans.filter(status=status_filter) if status_filter else plans

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return PlanDetailSerializer if self.action == "retrieve" else PlanSerializer

    def get_object(self) -> Plan:
        return selectors.plan_get(user=request_user(self.request), plan_id=self.kwargs["pk"])

    @extend_schema(request=PlanCreateSerializer, responses={201: PlanDetailSerializer},
                   parameters=[idempotency.PARAMETER])
    @idempotency.idempotent
    def create(self, request: Request) -> Response:
        body = PlanCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        plan = _create(request, body.validated_data)
        plan = selectors.plan_get(user=request_user(request), plan_id=plan.id)
        return Response(PlanDetailSerializer(plan).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: PlanSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        plan = selectors.plan_get_for_change(user=request_user(request), plan_id=pk)
        with transaction.atomic():
            plan = services.plan_cancel(plan_id=plan.id, actor=request_user(request))
        return Response(PlanSerializer(plan).data)

    @extend_schema(request=None, responses={200: PlanSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Run a failed or cancelled plan again from where it stopped (issue 10): only the steps that did
        not succeed run again. 409 ``plan.not_retryable`` otherwise."""
        plan = services.plan_retry(plan_id=selectors.plan_get_for_change(user=request_user(request), plan_id=pk).id,
                                   actor=request_user(request))
        return Response(PlanSerializer(plan).data)

