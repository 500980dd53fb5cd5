"""Plans and their steps in the Django admin, read-only (state changes go through the services), except that a
step can be added to a running plan, and a pending one changed or removed, through services/edits.py."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from common.errors import DomainError
from orchestrator import editing, services
from orchestrator.models import OrganisationBudget, Plan, PlanEvent, Step, UserBudget
from orchestrator.states import PlanStatus, StepStatus
from organisations.api import tenancy_of


def _organisation_scope(request: HttpRequest, rows: QuerySet[Any], path: str) -> QuerySet[Any]:
    """issue 11: staff see the rows of their own organisation only (``path`` leads from a row to its
    organisation id); superusers see every organisation's."""
    user = request.user
    if user.is_superuser:
        return rows
    return rows.filter(**{path: tenancy_of(user).organisation_id})  # type: ignore[arg-type]


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


# A plan of thousands of steps has tens of thousands of events: its page shows the newest few and links to
# the full, paginated list (an inline would render them all).
EVENTS_SHOWN = 50


@admin.register(PlanEvent)
class PlanEventAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "plan", "created_at", "type", "step_key", "actor"]
    list_filter = ["type"]
    search_fields = ["=plan__id", "step_key", "type"]
    list_select_related = ["plan", "actor"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[PlanEvent]:
        return _organisation_scope(request, super().get_queryset(request), "plan__organisation_id")


@admin.register(Plan)
class PlanAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["request_short", "owner", "template", "status", "progress", "tokens_used", "cost_used",
                    "created_at", "finished_at", "live_page"]
    list_filter = ["status", "template"]
    search_fields = ["request", "id"]
    date_hierarchy = "created_at"
    inlines = [StepInline]
    readonly_fields = ["recent_events"]
    list_select_related = ["owner"]

    @admin.display(description=f"newest {EVENTS_SHOWN} events")
    def recent_events(self, plan: Plan) -> str:
        events = PlanEvent.objects.filter(plan=plan).select_related("actor").order_by("-id")[:EVENTS_SHOWN]
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                                ((e.id, e.created_at.strftime("%H:%M:%S.%f")[:-3], e.type, e.step_key or "",
                                  e.actor or "") for e in events))
        return format_html('<table><tr><th>id</th><th>time</th><th>type</th><th>step</th><th>by</th></tr>{}</table>'
                           '<p><a href="/admin/orchestrator/planevent/?plan__id__exact={}">every event of this plan</a>'
                           '</p>', rows, plan.id)

    @admin.display(description="request")
    def request_short(self, plan: Plan) -> str:
        return plan.request[:80]

    # issue 15: the live page from the list and from each plan's page ("View on site"); step counts are
    # annotated on the list's one query, not counted per row.
    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return _organisation_scope(request, super().get_queryset(request), "organisation_id").annotate(
            step_count=Count("steps", distinct=True),
            steps_done=Count("steps", filter=Q(steps__status="succeeded"), distinct=True))

    def view_on_site(self, plan: Plan) -> str:
        return f"/plans/{plan.id}/"

    @admin.display(description="steps done")
    def progress(self, plan: Plan) -> str:
        return f"{getattr(plan, 'steps_done', '?')} / {getattr(plan, 'step_count', '?')}"

    @admin.display(description="live")
    def live_page(self, plan: Plan) -> str:
        return format_html('<a href="/plans/{}/" class="live-page">live page</a>', plan.id)


class StepEditForm(forms.ModelForm):  # type: ignore[type-arg]
    """Adding a step to a running plan, or changing a pending one (issue 10), through services/edits.py.

    The edit is applied in ``clean()``, not in ``save_model``: a refused edit (a cycle, a step that started
    meanwhile, a cap) must come back as the form's error, and only the service knows under the plan lock."""

    depends_on = forms.CharField(required=False, help_text="keys of the steps it waits for, comma-separated")
    input = forms.JSONField(required=False, initial=dict)

    class Meta:
        model = Step
        fields = ["plan", "key", "agent", "input", "depends_on", "risk", "approval_requested"]

    request: HttpRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.initial["depends_on"] = ", ".join(self.instance.depends_on)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        fields = {"agent": data["agent"], "input": data.get("input") or {}, "risk": data.get("risk") or "low",
                  "approval": bool(data.get("approval_requested")),
                  "depends_on": [d.strip() for d in (data.get("depends_on") or "").split(",") if d.strip()]}
        try:
            if not self.instance._state.adding:  # (a new Step has its uuid pk already)
                plan_id, key = self.instance.plan_id, self.instance.key
                edit = editing.edit_parse({"change": {key: fields}})
            else:
                plan_id, key = data["plan"].id, data["key"]
                edit = editing.edit_parse({"add": [{"key": key, **fields}]})
            services.plan_edit(plan_id=plan_id, edit=edit, actor=self.request.user)  # type: ignore[arg-type]
        except DomainError as exc:
            raise forms.ValidationError(f"{exc.code}: {exc.message}") from None
        self.applied = Step.objects.get(plan_id=plan_id, key=key)
        return data

    def _post_clean(self) -> None:
        pass  # the form never saves its instance: the edit service wrote the step (clean)


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Steps, read-only, except (issue 10) that a person with the step permissions may add a step to a running
    plan, change a pending one, or remove pending ones (the action): all through services/edits.py."""

    list_display = ["key", "plan", "agent", "status", "attempt", "prompt_tokens", "completion_tokens", "cost",
                    "started_at", "finished_at", "error_code"]
    list_filter = ["status", "agent"]
    search_fields = ["key", "plan__id", "plan__request"]
    list_select_related = ["plan"]
    form = StepEditForm
    actions = ["remove_pending"]
    raw_id_fields = ["plan"]

    def _editable(self, obj: Step | None) -> bool:
        return obj is None or (obj.status == StepStatus.PENDING and obj.plan.status == PlanStatus.RUNNING)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._editable(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # removal is the action below: one edit per plan, refused whole with its code

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        if obj is None or self.has_change_permission(request, obj):
            return ["plan", "key", "agent", "input", "depends_on", "risk", "approval_requested"]
        return [f.name for f in Step._meta.fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return []
        return ["plan", "key"] if self.has_change_permission(request, obj) else self.get_fields(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Step:
        return form.applied  # type: ignore[no-any-return]

    def save_model(self, request: HttpRequest, obj: Step, form: Any, change: bool) -> None:
        pass  # the edit service stored it (StepEditForm.clean)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # a step has no related rows to save

    @admin.action(description="Remove the selected pending steps (an edit of their running plan)",
                  permissions=["change"])
    def remove_pending(self, request: HttpRequest, queryset: QuerySet[Step]) -> None:
        by_plan: dict[Any, list[str]] = {}
        for plan_id, key in queryset.values_list("plan_id", "key"):
            by_plan.setdefault(plan_id, []).append(key)
        for plan_id, keys in by_plan.items():
            try:
                services.plan_edit(plan_id=plan_id, edit=editing.EditModel(remove=sorted(keys)),
                                   actor=request.user)  # type: ignore[arg-type]
            except DomainError as exc:
                self.message_user(request, f"plan {plan_id}: {exc.code}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"plan {plan_id}: removed {', '.join(sorted(keys))}")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Step]:
        return _organisation_scope(request, super().get_queryset(request), "plan__organisation_id")


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Running totals are read-only (the services add each call's usage); budgets may be set here."""

    list_display = ["user", "tokens_used", "cost_used", "budget_tokens", "budget_cost", "cap_tokens", "cap_cost"]
    readonly_fields = ["tokens_used", "cost_used"]
    search_fields = ["user__username"]
    list_select_related = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserBudget]:
        return _organisation_scope(request, super().get_queryset(request), "user__membership__organisation_id")


@admin.register(OrganisationBudget)
class OrganisationBudgetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """An organisation's budgets and caps (issue 11): what it has spent is the sum of its plans' totals."""

    list_display = ["organisation", "budget_tokens", "budget_cost", "cap_tokens", "cap_cost"]
    list_select_related = ["organisation"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrganisationBudget]:
        return _organisation_scope(request, super().get_queryset(request), "organisation_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)  # a tenant does not pick another tenant's row
