"""Every write to approvals: request, vote/decide, time out, escalate, cancel.

Concurrency: a decision locks the approval row (``SELECT ... FOR UPDATE``) and checks it is still
pending, so two racing decisions give exactly one outcome and the other caller gets
``approval.already_decided``. The resolution callback (the orchestrator resuming the step) runs inside
that same transaction: the decision and its effect commit together or not at all. Lock order is
approval, then plan; nothing here locks an approval while holding a plan lock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from agents.api import EgressRefused, guarded_client, webhook_policy
from approvals.models import Approval, ApprovalStatus, OnTimeout, Vote
from approvals.policies import Requirement
from common.errors import Conflict, DomainError, NotFound
from organisations.api import tenancy_of

log = logging.getLogger("approvals")

DECIDE_PERMISSION = "approvals.decide_approval"
MAX_EDITED_INPUT_BYTES = 64 * 1024


class ApprovalNotFound(NotFound):
    code = "approval.not_found"


class ApprovalForbidden(DomainError):
    code = "approval.forbidden"
    http_status = 403


class ApprovalAlreadyDecided(Conflict):
    code = "approval.already_decided"


class InvalidEdit(DomainError):
    code = "approval.invalid_input"


@dataclass(frozen=True)
class Resolution:
    """How an approval ended, handed to the orchestrator to resume (or end) exactly that step."""

    approval_id: uuid.UUID
    plan_id: uuid.UUID
    step_id: uuid.UUID
    status: str  # approved | rejected | failed
    edited_input: dict[str, Any] | None
    actor: User | None
    comment: str
    timed_out: bool


EventSink = Callable[[uuid.UUID, str, str, dict[str, Any], User | None], None]
_resolved: list[Callable[[Resolution], None]] = []
_events: list[EventSink] = []


def on_resolved(callback: Callable[[Resolution], None]) -> None:
    """Register the callback that resumes a step once its approval is decided (AppConfig.ready)."""
    _resolved.append(callback)


def on_event(callback: EventSink) -> None:
    """Register where approval events go: (plan_id, type, step_key, data, actor)."""
    _events.append(callback)


def _emit(approval: Approval, type_: str, actor: User | None = None, **data: Any) -> None:
    for sink in _events:
        sink(approval.plan_id, type_, approval.step_key, {"approval_id": str(approval.id), **data}, actor)


def admin_url(approval_id: uuid.UUID) -> str:
    return f"/admin/approvals/approval/{approval_id}/change/"


def approval_request(*, plan_id: uuid.UUID, step_id: uuid.UUID, step_key: str, agent: str, plan_request: str,
                     owner: User, step_input: dict[str, Any], context: dict[str, Any],
                     requirement: Requirement, organisation_id: int | None = None,
                     now: datetime | None = None) -> Approval:
    """Open a pending approval for a step (in the caller's transaction) and record approval.required.
    ``organisation_id``: the plan's organisation (default: its owner's)."""
    now = now or timezone.now()
    if organisation_id is None:
        organisation_id = tenancy_of(owner).organisation_id
    deadline = now + timedelta(seconds=requirement.timeout_seconds)
    approval = Approval.objects.create(
        plan_id=plan_id, step_id=step_id, step_key=step_key, agent=agent, plan_request=plan_request,
        organisation_id=organisation_id, requested_by=owner, input=step_input, context=context,
        policy=", ".join(requirement.policies),
        reason=requirement.reason, required_approvals=requirement.required_approvals,
        allow_self_approval=requirement.allow_self_approval,
        deadline=deadline, on_timeout=requirement.on_timeout,
        escalate_at=(now + timedelta(seconds=requirement.escalate_after_seconds)
                     if requirement.escalate_after_seconds else None),
        escalate_group=requirement.escalate_group, escalate_webhook=requirement.escalate_webhook, created_at=now,
    )
    _emit(approval, "approval.required", policy=approval.policy, reason=approval.reason,
          required_approvals=approval.required_approvals, deadline=deadline.isoformat(),
          on_timeout=approval.on_timeout, admin_url=admin_url(approval.id),
          api_url=f"/api/approvals/{approval.id}/approve/")
    log.info("approvals.approval.requested", extra={"plan_id": str(plan_id), "step_id": str(step_id),
                                                    "approval_id": str(approval.id)})
    return approval


def approvals_visible(*, user: User) -> QuerySet[Approval]:
    """Approvers (the decide permission) see every approval of their organisation; anyone else those of
    their own plans (in their organisation). Superusers see every approval of every organisation."""
    approvals = Approval.objects.select_related("requested_by", "decided_by")
    if user.is_superuser:
        return approvals
    approvals = approvals.filter(organisation_id=tenancy_of(user).organisation_id)
    if user.has_perm(DECIDE_PERMISSION):
        return approvals
    return approvals.filter(requested_by=user)


def _validate_edit(edited_input: Any) -> dict[str, Any]:
    if not isinstance(edited_input, dict):
        raise InvalidEdit("the edited input must be a JSON object")
    try:
        size = len(json.dumps(edited_input))
    except (TypeError, ValueError) as exc:
        raise InvalidEdit(f"the edited input is not JSON: {exc}") from None
    if size > MAX_EDITED_INPUT_BYTES:
        raise InvalidEdit(f"the edited input is {size} bytes; the limit is {MAX_EDITED_INPUT_BYTES}")
    return edited_input


def approval_decide(*, approval_id: uuid.UUID | str, user: User, approve: bool,
                    edited_input: dict[str, Any] | None = None, comment: str = "") -> Approval:
    """Cast ``user``'s vote; the approval is decided when the quorum approves or anyone rejects.

    Raises ApprovalNotFound (also when the user may not see it), ApprovalForbidden (no permission, or
    self-approval where the policy forbids it), ApprovalAlreadyDecided (decided, or this user already
    voted) and InvalidEdit. Takes the approval's row lock; the step resumes in the same transaction.
    """
    if edited_input is not None:
        edited_input = _validate_edit(edited_input)
        if not approve:
            raise InvalidEdit("an edited input goes with an approval, not a rejection")
    with transaction.atomic():
        try:
            approval = approvals_visible(user=user).select_for_update(of=("self",)).get(id=approval_id)
        except (Approval.DoesNotExist, ValueError):
            raise ApprovalNotFound(f"no approval {approval_id}") from None
        if not user.has_perm(DECIDE_PERMISSION):
            raise ApprovalForbidden("you do not have the permission to decide approvals")
        if approval.status != ApprovalStatus.PENDING:
            raise ApprovalAlreadyDecided(f"this approval was already {approval.status}")
        if approval.requested_by_id == user.pk and not approval.allow_self_approval:
            raise ApprovalForbidden("its policy does not let the person who started the plan approve it",
                                    code="approval.self_approval")
        if approval.votes.filter(user=user).exists():
            raise ApprovalAlreadyDecided("you have already voted on this approval", code="approval.already_voted")
        Vote.objects.create(approval=approval, user=user, approve=approve, comment=comment,
                            edited_input=edited_input)
        if edited_input is not None:
            approval.edited_input = edited_input
            approval.save(update_fields=["edited_input"])
            _emit(approval, "approval.edited", actor=user, keys=sorted(edited_input))
        approvals = approval.votes.filter(approve=True).count()
        _emit(approval, "approval.voted", actor=user, approve=approve, approvals=approvals,
              required_approvals=approval.required_approvals, comment=comment)
        if not approve:
            _resolve(approval, ApprovalStatus.REJECTED, actor=user, comment=comment)
        elif approvals >= approval.required_approvals:
            _resolve(approval, ApprovalStatus.APPROVED, actor=user, comment=comment)
    return approval


def _resolve(approval: Approval, status: ApprovalStatus, *, actor: User | None, comment: str,
             timed_out: bool = False) -> None:
    approval.status = status
    approval.decided_at = timezone.now()
    approval.decided_by = actor
    approval.comment = comment
    approval.save(update_fields=["status", "decided_at", "decided_by", "comment"])
    _emit(approval, "approval.decided", actor=actor, decision=str(status), comment=comment, timed_out=timed_out,
          edited=approval.edited_input is not None, by=actor.get_username() if actor else None)
    resolution = Resolution(approval.id, approval.plan_id, approval.step_id, str(status),
                            approval.edited_input if status == ApprovalStatus.APPROVED else None,
                            actor, comment, timed_out)
    for callback in _resolved:
        callback(resolution)
    log.info("approvals.approval.decided", extra={"approval_id": str(approval.id), "status": str(status),
                                                  "timed_out": timed_out})


TIMEOUT_OUTCOME = {OnTimeout.APPROVE: ApprovalStatus.APPROVED, OnTimeout.REJECT: ApprovalStatus.REJECTED,
                   OnTimeout.FAIL: ApprovalStatus.FAILED}


def approvals_expire(*, now: datetime | None = None) -> dict[str, int]:
    """Apply the default decision to approvals past their deadline, and escalate those past their
    escalation time. Each approval in its own short transaction; safe to run anywhere, repeatedly."""
    now = now or timezone.now()
    counts = {"timed_out": 0, "escalated": 0}
    overdue = Approval.objects.filter(status=ApprovalStatus.PENDING, deadline__lte=now)
    for approval_id in overdue.values_list("id", flat=True)[:500]:
        with transaction.atomic():
            approval = Approval.objects.select_for_update().get(id=approval_id)
            if approval.status != ApprovalStatus.PENDING:
                continue
            _emit(approval, "approval.timed_out", on_timeout=approval.on_timeout,
                  deadline=approval.deadline.isoformat() if approval.deadline else None)
            _resolve(approval, TIMEOUT_OUTCOME[OnTimeout(approval.on_timeout)], actor=None,
                     comment=f"no decision before the deadline: {approval.on_timeout} by default", timed_out=True)
            counts["timed_out"] += 1
    due = Approval.objects.filter(status=ApprovalStatus.PENDING, escalate_at__lte=now, escalated_at__isnull=True)
    for approval_id in due.values_list("id", flat=True)[:500]:
        with transaction.atomic():
            approval = Approval.objects.select_for_update().get(id=approval_id)
            if approval.status != ApprovalStatus.PENDING or approval.escalated_at:
                continue
            approval.escalated_at = now
            recipients = _group_emails(approval.escalate_group)
            approval.escalation_mail_pending = bool(recipients)
            approval.escalation_webhook_pending = bool(approval.escalate_webhook)
            approval.save(update_fields=["escalated_at", "escalation_mail_pending", "escalation_webhook_pending"])
            _emit(approval, "approval.escalated", group=approval.escalate_group, recipients=len(recipients),
                  webhook=bool(approval.escalate_webhook))
            transaction.on_commit(lambda a=approval: _send_notifications(a))  # type: ignore[misc]
            counts["escalated"] += 1
    lost_before = now - timedelta(seconds=NOTIFY_RESEND_AFTER)
    stuck = Approval.objects.filter(Q(escalation_mail_pending=True) | Q(escalation_webhook_pending=True),
                                    escalated_at__lt=lost_before)
    for approval in stuck[:500]:
        _send_notifications(approval)  # a lost message: its task never ran (it retries on its own otherwise)
    return counts


# A pending escalation notification older than this lost its task message: it is sent again.
NOTIFY_RESEND_AFTER = 900


def _send_notifications(approval: Approval) -> None:
    """Hand the escalation's mail and webhook to their retrying tasks (approvals/tasks.py)."""
    from approvals import tasks

    for pending, task in ((approval.escalation_mail_pending, tasks.escalation_mail),
                          (approval.escalation_webhook_pending, tasks.escalation_webhook)):
        if not pending:
            continue
        try:
            task.apply_async(args=(str(approval.id),), retry=False)
        except (KombuError, RedisError, OSError) as exc:  # approvals.expire sends it again later
            log.warning("approvals.escalation.send_failed", extra={"approval_id": str(approval.id),
                                                                   "error": repr(exc)})


def _group_emails(group: str) -> list[str]:
    if not group:
        return []
    users = get_user_model().objects.filter(groups__name=group, is_active=True).exclude(email="")
    return list(users.values_list("email", flat=True))


def escalation_mail_send(*, approval_id: uuid.UUID) -> None:
    """Email the escalation group about an overdue approval, once. Does I/O outside any transaction (the
    mail server's own timeout bounds it); raises the mail error so that the task retries it."""
    approval = Approval.objects.filter(id=approval_id, escalation_mail_pending=True).first()
    if approval is None:
        return  # sent already (a duplicate delivery), or nothing to send
    subject = f"Approval overdue: step {approval.step_key} of plan {approval.plan_id}"
    body = (f"The step {approval.step_key!r} ({approval.agent}) of the plan {approval.plan_request[:200]!r} has "
            f"waited since {approval.created_at:%Y-%m-%d %H:%M} UTC. Deadline: {approval.deadline}, then "
            f"{approval.on_timeout} by default.\nDecide: {admin_url(approval.id)}")
    recipients = _group_emails(approval.escalate_group)
    if recipients:
        send_mail(subject, body, None, recipients, fail_silently=False)
    Approval.objects.filter(id=approval_id).update(escalation_mail_pending=False)
    log.info("approvals.escalation.mailed", extra={"approval_id": str(approval_id), "recipients": len(recipients)})


def escalation_webhook_send(*, approval_id: uuid.UUID) -> None:
    """POST the escalation to its webhook, once. Raises httpx.HTTPError so that the task retries it."""
    approval = Approval.objects.filter(id=approval_id, escalation_webhook_pending=True).first()
    if approval is None:
        return
    payload = {"type": "approval.escalated", "approval_id": str(approval.id), "plan_id": str(approval.plan_id),
               "step": approval.step_key, "agent": approval.agent, "deadline": str(approval.deadline),
               "admin_url": admin_url(approval.id)}
    # Through the SSRF guard like every outbound call: public addresses only (or WEBHOOK_PRIVATE_NETWORKS),
    # no redirects. A refused address is not retried: it is logged and the notice dropped.
    try:
        with guarded_client(webhook_policy(approval.escalate_webhook), timeout=5, max_redirects=0) as client:
            client.post(approval.escalate_webhook, json=payload).raise_for_status()
    except EgressRefused as exc:  # never retried: the address is not allowed
        Approval.objects.filter(id=approval_id).update(escalation_webhook_pending=False)
        log.warning("approvals.escalation.webhook_refused", extra={"approval_id": str(approval_id),
                                                                    "error": exc.message})
        return
    Approval.objects.filter(id=approval_id).update(escalation_webhook_pending=False)
    log.info("approvals.escalation.webhook_sent", extra={"approval_id": str(approval_id)})


def approvals_cancel(*, step_ids: list[uuid.UUID]) -> int:
    """Close the pending approvals of steps that were cancelled (their plan ended). Own transaction."""
    with transaction.atomic():
        closed = 0
        for approval in Approval.objects.select_for_update().filter(step_id__in=step_ids,
                                                                    status=ApprovalStatus.PENDING):
            approval.status = ApprovalStatus.CANCELLED
            approval.decided_at = timezone.now()
            approval.save(update_fields=["status", "decided_at"])
            _emit(approval, "approval.cancelled")
            closed += 1
    return closed
