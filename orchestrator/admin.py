"""Plans and their steps in the Django admin, read-only: state changes go through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from orchestrator.models import Plan, PlanEvent, Step, UserBudget


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepInline(ReadOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = Step
    fields = readonly_fields = ("key", "agent", "status", "attempt", "depends_on", "started_at", "finished_at",
                                "error_code", "worker")
    ordering = ["queued_at", "key"]
    extra = 0
    show_change_link = True


class EventInline(ReadOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = PlanEvent
    fields = readonly_fields = ("id", "created_at", "type", "step_key", "data", "actor")
    extra = 0


@admin.register(Plan)
class PlanAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["request_short", "owner", "template", "status", "tokens_used", "cost_used", "created_at",
                    "finished_at"]
    list_filter = ["status", "template"]
    search_fields = ["request", "id"]
    date_hierarchy = "created_at"
    inlines = [StepInline, EventInline]
    list_select_related = ["owner"]

    @admin.display(description="request")
    def request_short(self, plan: Plan) -> str:
        return plan.request[:80]


@admin.register(Step)
class StepAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["key", "plan", "agent", "status", "attempt", "prompt_tokens", "completion_tokens", "cost",
                    "started_at", "finished_at", "error_code"]
    list_filter = ["status", "agent"]
    search_fields = ["key", "plan__id", "plan__request"]
    list_select_related = ["plan"]


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Running totals are read-only (the services add each call's usage); budgets may be set here."""

    list_display = ["user", "tokens_used", "cost_used", "budget_tokens", "budget_cost", "cap_tokens", "cap_cost"]
    readonly_fields = ["tokens_used", "cost_used"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
