"""The approval queue in the Django admin: pending first, bulk approve / reject, and a decision page
where an approver reads what the step will receive, edits its input and leaves a comment.

Only users with the "decide approval" permission see the queue; every decision goes through
``approvals.services.approval_decide`` (the same rules as the API: quorum, no self-approval, one outcome).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from approvals import services
from approvals.models import Approval, ApprovalPolicy, ApprovalStatus
from common.errors import DomainError
from organisations.api import tenancy_of


def _diff(before: Any, after: Any) -> list[tuple[str, str]]:
    """The edit an approver made to a step's input, line by line: ("+" | "-" | " ", text)."""
    if after is None or after == before:
        return []
    old = json.dumps(before, indent=2, sort_keys=True).splitlines()
    new = json.dumps(after, indent=2, sort_keys=True).splitlines()
    return [(line[0], line[2:]) for line in difflib.ndiff(old, new) if line[:1] in "+- "]


def _user(request: HttpRequest) -> User:
    """The admin's user: always a logged-in staff member here (the admin site requires it)."""
    assert isinstance(request.user, User)
    return request.user


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "enabled", "agent", "template", "step_key", "min_risk", "min_cost",
                    "required_approvals", "allow_self_approval", "timeout_seconds", "on_timeout"]
    list_filter = ["enabled", "on_timeout"]
    search_fields = ["name", "agent", "template", "step_key"]

    # issue 11: staff manage their own organisation's policies; those for every organisation (no
    # organisation) and other organisations' are for superusers.
    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalPolicy]:
        policies = super().get_queryset(request)
        if request.user.is_superuser:
            return policies
        return policies.filter(organisation_id=tenancy_of(_user(request)).organisation_id)

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if request.user.is_superuser else ["organisation"]

    def save_model(self, request: HttpRequest, obj: ApprovalPolicy, form: Any, change: bool) -> None:
        if not request.user.is_superuser:
            obj.organisation_id = tenancy_of(_user(request)).organisation_id
        super().save_model(request, obj, form, change)


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["status_badge", "waiting", "request_short", "started_by", "step_key", "agent", "policy", "votes",
                    "deadline", "live_page"]
    list_select_related = ["requested_by"]
    list_display_links = ["status_badge", "step_key"]
    list_filter = ["status", "agent", "policy"]
    search_fields = ["plan_request", "step_key", "agent", "plan_id", "policy"]
    actions = ["approve_selected", "reject_selected"]
    change_form_template = "admin/approvals/approval/decide.html"

    # --- who sees the queue ---
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.DECIDE_PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(services.DECIDE_PERMISSION)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.DECIDE_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- the list ---
    def get_ordering(self, request: HttpRequest) -> list[Any]:
        pending_first = Case(When(status=ApprovalStatus.PENDING, then=Value(0)), default=Value(1),
                             output_field=IntegerField())
        return [pending_first.asc(), "created_at"]

    @admin.display(description="status", ordering="status")
    def status_badge(self, approval: Approval) -> str:
        colours = {"pending": "#b58100", "approved": "#2e7d32", "rejected": "#c62828", "failed": "#c62828",
                   "cancelled": "#666"}
        return format_html('<b style="color:{}">{}</b>', colours.get(approval.status, "#000"), approval.status)

    @admin.display(description="age", ordering="created_at")
    def waiting(self, approval: Approval) -> str:
        return timesince(approval.created_at, approval.decided_at or timezone.now())

    @admin.display(description="plan request")
    def request_short(self, approval: Approval) -> str:
        return approval.plan_request[:80]

    # issue 15: who started each plan, the live page, and the votes counted in the list's one query
    # issue 11: an approver's queue holds their organisation's approvals only (superusers: every one), so
    # another organisation's approval is not in the list, and its page redirects as a missing one.
    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        approvals = super().get_queryset(request)
        if not request.user.is_superuser:
            approvals = approvals.filter(organisation_id=tenancy_of(_user(request)).organisation_id)
        return approvals.annotate(approve_votes=Count("votes", filter=Q(votes__approve=True)))

    @admin.display(description="approvals")
    def votes(self, approval: Approval) -> str:
        return f"{getattr(approval, 'approve_votes', 0)}/{approval.required_approvals}"

    @admin.display(description="started by", ordering="requested_by__username")
    def started_by(self, approval: Approval) -> str:
        return approval.requested_by.get_username() if approval.requested_by else "-"

    @admin.display(description="plan")
    def live_page(self, approval: Approval) -> str:
        return format_html('<a href="/plans/{}/">live page</a>', approval.plan_id)

    def _decide_many(self, request: HttpRequest, queryset: QuerySet[Approval], decision: str) -> None:
        done, errors = 0, []
        for approval in queryset:
            try:
                services.approval_decide(approval_id=approval.id, user=_user(request), approve=decision == "approve")
                done += 1
            except DomainError as exc:
                errors.append(f"{approval.step_key}: {exc.message}")
        if done:
            self.message_user(request, f"{decision}d {done} approval(s)", messages.SUCCESS)
        for error in errors:
            self.message_user(request, error, messages.ERROR)

    @admin.action(description="Approve selected steps", permissions=["decide"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide_many(request, queryset, "approve")

    @admin.action(description="Reject selected steps", permissions=["decide"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide_many(request, queryset, "reject")

    # --- the decision page ---
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        approval = self.get_object(request, object_id)
        if approval is None:
            self.message_user(request, f"No approval {object_id}.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:approvals_approval_changelist"))
        edited_text = request.POST.get("edited_input", "")
        comment = request.POST.get("comment", "")
        if request.method == "POST":
            decision = request.POST.get("decision", "")
            try:
                edited = self._edited(approval, edited_text) if decision == "approve" else None
                services.approval_decide(approval_id=approval.id, user=_user(request), approve=decision == "approve",
                                         edited_input=edited, comment=comment)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"{approval.step_key}: {decision}d", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:approvals_approval_changelist"))
        # Decide buttons only for someone who may decide this one: pending, the permission, not their own
        # plan unless its policy allows it, and no vote of theirs in yet.
        user = _user(request)
        self_blocked = approval.requested_by_id == user.pk and not approval.allow_self_approval
        voted = approval.votes.filter(user=user).exists()
        decidable = (approval.status == ApprovalStatus.PENDING and self.has_decide_permission(request)
                     and not self_blocked and not voted)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Approve step {approval.step_key}?",
            "approval": approval,
            "input_json": edited_text or json.dumps(approval.edited_input or approval.input, indent=2),
            "context_json": json.dumps(approval.context, indent=2),
            "comment": comment,
            "votes": approval.votes.select_related("user").order_by("created_at"),
            "decidable": decidable,
            "self_approval_blocked": self_blocked,
            "already_voted": voted,
            "upstream": [(key, json.dumps(value, indent=2)) for key, value in sorted((approval.context or {}).items())],
            "input_diff": _diff(approval.input, approval.edited_input),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_form_template, context)

    @staticmethod
    def _edited(approval: Approval, text: str) -> dict[str, Any] | None:
        """The edited input, or None when the approver left it as it was."""
        if not text.strip():
            return None
        try:
            edited = json.loads(text)
        except json.JSONDecodeError as exc:
            raise services.InvalidEdit(f"the input is not valid JSON: {exc}") from None
        return None if edited == (approval.edited_input or approval.input) else edited
