"""REST API for approvals, and the guide's POST /workflow/{id}/approve."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.request import Request
from rest_framework.response import Response

from approvals import api as approvals
from approvals.serializers import ApprovalSerializer, DecisionSerializer, WorkflowDecisionSerializer
from common.api import UUID_PATTERN, request_user
from common.errors import DomainError, NotFound


class ApprovalViewSet(viewsets.ViewSet):
    """Approvals you may see: approvers (the "decide approval" permission) see all, others their own plans'."""

    lookup_value_regex = UUID_PATTERN

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=["pending", "approved", "rejected",
                                                                     "failed", "cancelled"]),
                               OpenApiParameter("plan", str)],
                   responses=ApprovalSerializer(many=True))
    def list(self, request: Request) -> Response:
        plan = request.query_params.get("plan")
        try:
            plan_id = uuid.UUID(plan) if plan else None
        except ValueError:
            raise DomainError(f"plan must be a plan id, not {plan!r}", code="invalid") from None
        found = approvals.approvals_visible(user=request_user(request), status=request.query_params.get("status"),
                                            plan_id=plan_id)
        return Response(ApprovalSerializer(found, many=True).data)

    @extend_schema(responses=ApprovalSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ApprovalSerializer(approvals.approval_get(user=request_user(request), approval_id=pk)).data)

    def _decide(self, request: Request, pk: str, decision: str) -> Response:
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        info = approvals.approval_decide(approval_id=pk, user=request_user(request), decision=decision,
                                         edited_input=body.validated_data["edited_input"],
                                         comment=body.validated_data["comment"])
        return Response(ApprovalSerializer(info).data)

    @extend_schema(request=DecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve (optionally with an edited input for the step, and a comment)."""
        return self._decide(request, pk, "approve")

    @extend_schema(request=DecisionSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        return self._decide(request, pk, "reject")


@extend_schema(request=WorkflowDecisionSerializer, responses=ApprovalSerializer)
@api_view(["POST"])
def workflow_approve(request: Request, workflow_id: uuid.UUID) -> Response:
    """The guide's endpoint: decide the pending approval of a plan (name the step when several wait)."""
    body = WorkflowDecisionSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    pending = approvals.approvals_visible(user=request_user(request), status="pending", plan_id=workflow_id)
    if data.get("approval_id"):
        pending = [a for a in pending if a.id == data["approval_id"]]
    if data.get("step"):
        pending = [a for a in pending if a.step_key == data["step"]]
    if not pending:
        raise NotFound(f"no pending approval for workflow {workflow_id}", code="approval.not_found")
    if len(pending) > 1:
        steps = ", ".join(a.step_key for a in pending)
        raise DomainError(f'several steps wait for approval ({steps}): say which with "step"',
                          code="approval.ambiguous")
    info = approvals.approval_decide(approval_id=pending[0].id, user=request_user(request), decision=data["decision"],
                                     edited_input=data["edited_input"], comment=data["comment"])
    return Response({**ApprovalSerializer(info).data,
                     "result": "resumed" if info.status == "approved" else info.status}, status=status.HTTP_200_OK)
