"""Experiments in the admin: edit them and their variants, and read each one's report."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from experiments.models import Assignment, Experiment, ExperimentEvent, Variant
from experiments.selectors import experiment_report
from experiments.stats import Interval


def _cell(value: Interval | None, places: int) -> str:
    if value is None:
        return "-"
    if value.low is None or value.high is None:
        return f"{value.value:.{places}f}"
    return f"{value.value:.{places}f} [{value.low:.{places}f}, {value.high:.{places}f}]"


class VariantInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Variant
    extra = 0
    fields = ["name", "weight", "system_prompt", "model", "agent", "template", "status", "stopped_reason"]
    readonly_fields = ["stopped_reason"]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "status", "template", "agent", "sticky", "stop_metric", "from_file", "report_link"]
    list_filter = ["status", "from_file"]
    inlines = [VariantInline]

    @admin.display(description="report")
    def report_link(self, obj: Experiment) -> str:
        return format_html('<a href="{}">report</a>', reverse("admin:experiments_experiment_report", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        report = self.admin_site.admin_view(self.report_view)
        return [path("<int:pk>/report/", report, name="experiments_experiment_report"), *super().get_urls()]

    def report_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        experiment = get_object_or_404(Experiment, pk=pk)
        if not self.has_view_permission(request, experiment):
            return HttpResponse(status=403)
        report = experiment_report(experiment)
        rows = [{"variant": v, "cells": [_cell(v.cost, 4), _cell(v.tokens, 0), _cell(v.latency, 2),
                                         _cell(v.failure_rate, 3),
                                         f"{v.approvals['approved']} / {v.approvals['edited']} / "
                                         f"{v.approvals['rejected']}",
                                         _cell(v.approved_as_is, 3), _cell(v.judge_score, 2)]}
                for v in report.variants]
        context: dict[str, Any] = {**self.admin_site.each_context(request), "opts": self.model._meta,
                                   "title": f"Report: {experiment.name}", "report": report, "rows": rows}
        return TemplateResponse(request, "admin/experiments/report.html", context)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["plan_id", "experiment", "variant", "outcome", "cost", "latency", "approval", "judge_score"]
    list_filter = ["experiment", "variant", "outcome", "approval"]
    search_fields = ["plan_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ExperimentEvent)
class ExperimentEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["created_at", "experiment", "variant", "type"]
    list_filter = ["type", "experiment"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
