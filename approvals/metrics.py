"""What /metrics needs from approvals: how many wait for a decision and how long the oldest has waited."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Min
from django.utils import timezone

from approvals.models import Approval, ApprovalStatus


@dataclass(frozen=True)
class PendingApprovals:
    count: int
    oldest_age_seconds: float  # 0 when none is pending


def pending_approvals() -> PendingApprovals:
    row = Approval.objects.filter(status=ApprovalStatus.PENDING).aggregate(n=Count("id"), oldest=Min("created_at"))
    oldest = row["oldest"]
    return PendingApprovals(row["n"], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
