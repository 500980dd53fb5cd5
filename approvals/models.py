"""Approvals: a step waiting for people, the votes they cast, and the policies that require them.

Plans and steps are referred to by id only (this app never imports the orchestrator's models); what a
person needs to decide (the plan's request, the step, its input) is copied onto the approval.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone


class Risk(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}


class OnTimeout(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    FAIL = "fail"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    FAILED = "failed"  # timed out with "fail" as the default decision
    CANCELLED = "cancelled"  # the plan was cancelled while the approval was pending


class ApprovalPolicy(models.Model):
    """A rule, editable in the admin, that makes matching steps wait for approval.

    Empty match fields match anything; a policy with no match field at all matches every step.
    Policies in approvals.yaml work the same way; a plan can add gates but never remove these.
    """

    name = models.SlugField(max_length=100, unique=True)
    # issue 11: a policy of one organisation gates only that organisation's plans; none: every organisation's
    organisation = models.ForeignKey("organisations.Organisation", on_delete=models.CASCADE, null=True,
                                     blank=True, related_name="approval_policies",
                                     help_text="gate only this organisation's plans; empty: every organisation's")
    enabled = models.BooleanField(default=True)
    agent = models.CharField(max_length=100, blank=True, help_text="match steps run by this agent")
    template = models.CharField(max_length=100, blank=True, help_text="match steps of this workflow template")
    step_key = models.CharField(max_length=100, blank=True, help_text="match the template step with this key")
    min_risk = models.CharField(max_length=8, choices=Risk.choices, blank=True,
                                help_text="match steps of at least this risk")
    min_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True,
                                   help_text="match steps whose estimated cost is at least this (USD)")
    required_approvals = models.PositiveSmallIntegerField(default=1, help_text="quorum: distinct approvers")
    allow_self_approval = models.BooleanField(default=False,
                                              help_text="may the person who started the plan approve it")
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="deadline; empty: none")
    on_timeout = models.CharField(max_length=8, choices=OnTimeout.choices, default=OnTimeout.REJECT)
    escalate_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    escalate_group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    escalate_webhook = models.URLField(blank=True)

    class Meta:
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return self.name


class Approval(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan_id = models.UUIDField(db_index=True)
    step_id = models.UUIDField(db_index=True)
    step_key = models.CharField(max_length=100)
    agent = models.CharField(max_length=100)
    plan_request = models.TextField()
    # issue 11: the plan's organisation; its approvers (and only they) see and decide it. Null only for rows
    # older than organisations until the data migration fills them.
    organisation = models.ForeignKey("organisations.Organisation", on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                     help_text="the plan's owner")
    input = models.JSONField(default=dict, help_text="the input the step will receive")
    context = models.JSONField(default=dict, help_text="its dependencies' outputs, by step key")
    policy = models.CharField(max_length=300, help_text="the policies (or budget) that require it")
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    allow_self_approval = models.BooleanField(default=False)
    deadline = models.DateTimeField(null=True, blank=True)
    on_timeout = models.CharField(max_length=8, choices=OnTimeout.choices, default=OnTimeout.REJECT)
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalate_group = models.CharField(max_length=150, blank=True)
    escalate_webhook = models.URLField(blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # Escalation notifications still to deliver (their tasks retry; approvals.expire re-sends lost ones).
    escalation_mail_pending = models.BooleanField(default=False)
    escalation_webhook_pending = models.BooleanField(default=False)
    edited_input = models.JSONField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        permissions = [("decide_approval", "Can approve or reject steps")]
        indexes = [models.Index(fields=["status", "deadline"]), models.Index(fields=["status", "escalate_at"])]
        constraints = [
            # One open approval per step: a gate is never requested twice for the same wait.
            models.UniqueConstraint(fields=["step_id"], condition=models.Q(status="pending"),
                                    name="approval_one_pending_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.step_key} ({self.status})"


class Vote(models.Model):
    """One person's decision on an approval; a quorum needs that many distinct approving votes."""

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    edited_input = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["approval", "user"], name="vote_once_per_approver")]
