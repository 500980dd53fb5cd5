"""What other apps may call. Plain dataclasses cross the boundary; models stay inside this app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q

from approvals import services
from approvals.models import Approval
from approvals.policies import Policy, Requirement, StepFacts, policies, requirement_for
from approvals.services import (
    ApprovalAlreadyDecided,
    ApprovalForbidden,
    ApprovalNotFound,
    InvalidEdit,
    Resolution,
    admin_url,
    approval_request,
    approvals_cancel,
    approvals_expire,
    on_event,
    on_resolved,
)

__all__ = [
    "ApprovalAlreadyDecided", "ApprovalForbidden", "ApprovalInfo", "ApprovalNotFound", "InvalidEdit", "Policy",
    "approval_get", "policies",
    "Requirement", "Resolution", "StepFacts", "admin_url", "approval_decide", "approval_request",
    "approvals_cancel", "approvals_expire", "approvals_visible", "on_event", "on_resolved", "requirement_for",
    "approval_outcomes",
]


@dataclass(frozen=True)
class ApprovalInfo:
    id: uuid.UUID
    plan_id: uuid.UUID
    step_id: uuid.UUID
    step_key: str
    agent: str
    status: str
    policy: str
    reason: str
    input: dict[str, Any]
    edited_input: dict[str, Any] | None
    required_approvals: int
    approvals: int
    deadline: datetime | None
    on_timeout: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str
    admin_url: str

    @classmethod
    def of(cls, approval: Approval) -> ApprovalInfo:
        return cls(
            id=approval.id, plan_id=approval.plan_id, step_id=approval.step_id, step_key=approval.step_key,
            agent=approval.agent, status=approval.status, policy=approval.policy, reason=approval.reason,
            input=approval.input, edited_input=approval.edited_input,
            required_approvals=approval.required_approvals,
            approvals=_approving_votes(approval), deadline=approval.deadline,
            on_timeout=approval.on_timeout, created_at=approval.created_at, decided_at=approval.decided_at,
            decided_by=approval.decided_by.get_username() if approval.decided_by else None,
            comment=approval.comment, admin_url=admin_url(approval.id),
        )


def _approving_votes(approval: Approval) -> int:
    annotated = getattr(approval, "approving_votes", None)  # from approvals_visible's one query
    return int(annotated) if annotated is not None else approval.votes.filter(approve=True).count()


def approvals_visible(*, user: User, status: str | None = None,
                      plan_id: uuid.UUID | None = None) -> list[ApprovalInfo]:
    """The approvals ``user`` may see (approvers: all; others: their own plans'), oldest first."""
    approvals = services.approvals_visible(user=user)
    if status:
        approvals = approvals.filter(status=status)
    if plan_id:
        approvals = approvals.filter(plan_id=plan_id)
    approvals = approvals.annotate(approving_votes=Count("votes", filter=Q(votes__approve=True)))
    return [ApprovalInfo.of(a) for a in approvals.order_by("created_at")[:500]]


def approval_get(*, user: User, approval_id: uuid.UUID | str) -> ApprovalInfo:
    """Raises ApprovalNotFound, also for an approval the user may not see."""
    try:
        return ApprovalInfo.of(services.approvals_visible(user=user).get(id=approval_id))
    except (Approval.DoesNotExist, ValueError):
        raise ApprovalNotFound(f"no approval {approval_id}") from None


def approval_decide(*, approval_id: uuid.UUID | str, user: User, decision: str,
                    edited_input: dict[str, Any] | None = None, comment: str = "") -> ApprovalInfo:
    """``decision`` is "approve" or "reject". See services.approval_decide for what it raises."""
    if decision not in ("approve", "reject"):
        raise InvalidEdit(f'decision must be "approve" or "reject", not {decision!r}', code="approval.bad_decision")
    approval = services.approval_decide(approval_id=approval_id, user=user, approve=decision == "approve",
                                        edited_input=edited_input, comment=comment)
    return ApprovalInfo.of(approval)


# --- issue 14: what experiments score (approved as is, edited, rejected) ---------------------------------

_OUTCOME_RANK = ("approved", "edited", "timed_out", "rejected")  # a plan's worst decision is its outcome


def approval_outcomes(*, plan_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Per plan with decided approvals: ``rejected`` if a person rejected one, ``timed_out`` if one ended
    without a decision (no decided_by), ``edited`` if one was approved with an edited input, else
    ``approved`` (as it was). Plans with no decided approval are left out. One query."""
    found: dict[uuid.UUID, str] = {}
    decided = Approval.objects.filter(plan_id__in=plan_ids).exclude(status__in=["pending", "cancelled"])
    for plan_id, status, edited, decided_by in decided.values_list("plan_id", "status", "edited_input",
                                                                  "decided_by_id"):
        if decided_by is None:
            outcome = "timed_out"
        elif status == "approved":
            outcome = "edited" if edited is not None else "approved"
        else:
            outcome = "rejected"
        if _OUTCOME_RANK.index(outcome) >= _OUTCOME_RANK.index(found.get(plan_id, "approved")):
            found[plan_id] = outcome
    return found
