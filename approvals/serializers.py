from __future__ import annotations

from rest_framework import serializers


class ApprovalSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """An ApprovalInfo (approvals.api) as JSON."""

    id = serializers.UUIDField()
    plan_id = serializers.UUIDField()
    step_id = serializers.UUIDField()
    step_key = serializers.CharField()
    agent = serializers.CharField()
    status = serializers.CharField()
    policy = serializers.CharField()
    reason = serializers.CharField()
    input = serializers.JSONField()
    edited_input = serializers.JSONField(allow_null=True)
    required_approvals = serializers.IntegerField()
    approvals = serializers.IntegerField()
    deadline = serializers.DateTimeField(allow_null=True)
    on_timeout = serializers.CharField()
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(allow_null=True)
    comment = serializers.CharField()
    admin_url = serializers.CharField()


class DecisionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    edited_input = serializers.DictField(required=False, allow_null=True, default=None)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class WorkflowDecisionSerializer(DecisionSerializer):
    """The guide's POST /workflow/{id}/approve body."""

    decision = serializers.ChoiceField(choices=["approve", "reject"])
    step = serializers.CharField(required=False, help_text="which step, when several wait")
    approval_id = serializers.UUIDField(required=False)
