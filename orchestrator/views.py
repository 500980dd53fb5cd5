"""REST API for plans: thin views over services and selectors."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api import UUID_PATTERN, request_user
from common.errors import DomainError
from integrations import idempotency
from orchestrator import editing, selectors, services
from orchestrator.models import Plan
from orchestrator.serializers import PlanCreateSerializer, PlanDetailSerializer, PlanSerializer
from orchestrator.services import edits


def _create(request: Request, data: dict[str, Any]) -> Plan:
    return services.plan_create(owner=request_user(request), request=data["request"], template=data["template"],
                                inputs=data["inputs"], steps=data.get("steps"),
                                budget_tokens=data.get("budget_tokens"), budget_cost=data.get("budget_cost"),
                                cap_tokens=data.get("cap_tokens"), cap_cost=data.get("cap_cost"),
                                max_replans=data.get("max_replans"))


STEP_KEY = r"(?P<key>[a-z][a-z0-9_-]{0,99})"
IF_MATCH = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="the plan's version (its ETag, or ``version`` in the plan) the edit was made against: if the "
                "plan has changed since, the edit is refused with 409 plan.edit_conflict")


def _version(request: Request) -> int | None:
    """The plan version in If-Match (``"3"``, ``W/"3"`` or ``3``); None if absent or ``*``."""
    raw = request.headers.get("If-Match", "").strip()
    if raw in ("", "*"):
        return None
    value = raw.removeprefix("W/").strip('"')
    if not value.isdigit() or len(value) > 9:
        raise DomainError(f"If-Match must be a plan version (a number), not {raw[:40]!r}", code="plan.bad_version")
    return int(value)


def _detail(request: Request, plan_id: uuid.UUID | str) -> Response:
    """The plan's detail, with its version as the ETag (for If-Match on its edits)."""
    plan = selectors.plan_detail(user=request_user(request), plan_id=plan_id)
    response = Response(PlanDetailSerializer(plan).data)
    response["ETag"] = f'"{plan.version}"'
    return response


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
        plan = selectors.plan_detail(user=request_user(request), plan_id=plan.id)
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


    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return _detail(request, self.kwargs["pk"])

    # --- editing a running plan, re-running from a step (issue 10; services/edits.py) -------------------

    @extend_schema(request=editing.EditModel, responses={200: PlanDetailSerializer}, parameters=[IF_MATCH])
    @action(detail=True, methods=["post"])
    def edit(self, request: Request, pk: str) -> Response:
        """Edit a running plan in one go: ``add`` steps, ``remove`` and ``change`` pending ones. Validated
        whole against the plan as it is, applied whole or refused whole."""
        plan = self.get_object()
        body = editing.edit_parse(request.data)
        edits.plan_edit(plan_id=plan.id, edit=body, actor=request_user(request), version=_version(request))
        return _detail(request, plan.id)

    @extend_schema(request=editing.AddStepsModel, responses={200: PlanDetailSerializer}, parameters=[IF_MATCH])
    @action(detail=True, methods=["post"], url_path="steps")
    def steps_add(self, request: Request, pk: str) -> Response:
        """Add steps to a running plan: ``{"steps": [...]}``; they may depend on any step of it."""
        plan = self.get_object()
        body = editing.EditModel(add=editing.add_parse(request.data).steps)
        edits.plan_edit(plan_id=plan.id, edit=body, actor=request_user(request), version=_version(request))
        return _detail(request, plan.id)

    @extend_schema(request=editing.StepChangeModel, responses={200: PlanDetailSerializer}, parameters=[IF_MATCH])
    @action(detail=True, methods=["patch"], url_path=f"steps/{STEP_KEY}")
    def step_change(self, request: Request, pk: str, key: str) -> Response:
        """Change a pending step's agent, input, dependencies, risk, approval, fan_out or replan."""
        plan = self.get_object()
        change = editing.change_parse(request.data)
        edits.plan_edit(plan_id=plan.id, edit=editing.EditModel(change={key: change}), actor=request_user(request),
                        version=_version(request))
        return _detail(request, plan.id)

    @extend_schema(request=None, responses={200: PlanDetailSerializer}, parameters=[IF_MATCH])
    @step_change.mapping.delete
    def step_remove(self, request: Request, pk: str, key: str) -> Response:
        """Remove a pending step (409 plan.step_in_use while another step depends on it)."""
        plan = self.get_object()
        edits.plan_edit(plan_id=plan.id, edit=editing.EditModel(remove=[key]), actor=request_user(request),
                        version=_version(request))
        return _detail(request, plan.id)

    @extend_schema(request=editing.RerunModel, responses={200: PlanDetailSerializer}, parameters=[IF_MATCH])
    @action(detail=True, methods=["post"], url_path=f"steps/{STEP_KEY}/rerun")
    def step_rerun(self, request: Request, pk: str, key: str) -> Response:
        """Run a finished step again, with a new ``input`` if given, and everything downstream of it; the
        plan runs again if it had ended. Nothing else is called again."""
        plan = self.get_object()
        body = editing.rerun_parse(request.data)
        edits.step_rerun(plan_id=plan.id, key=key, new_input=body.input, actor=request_user(request),
                         version=_version(request))
        return _detail(request, plan.id)
