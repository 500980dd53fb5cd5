"""Pages for people (session login): ``/`` the home page and ``/plans/`` the plan list with filters. The
live page of one plan is ``streams.views.plan_page``. Thin: reads go through ``orchestrator.selectors`` and
``approvals.api``; nothing here changes state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from approvals import api as approvals
from orchestrator import selectors
from orchestrator.models import Plan
from orchestrator.states import PlanStatus

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
ACTIVE = (PlanStatus.PLANNING, PlanStatus.RUNNING)
DECIDE_PERMISSION = "approvals.decide_approval"


def page_context(request: HttpRequest) -> dict[str, Any]:
    """What every page's navigation needs."""
    return {"can_decide": request.user.has_perm(DECIDE_PERMISSION), "flower_url": settings.FLOWER_URL}


def _with_progress(plans: QuerySet[Plan]) -> QuerySet[Plan]:
    """Step counts in the same query (no query per row)."""
    return plans.annotate(step_count=Count("steps", distinct=True),
                          steps_done=Count("steps", filter=Q(steps__status="succeeded"), distinct=True))


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """GET /: what is running, what waits for people, and where everything is."""
    user = cast(User, request.user)
    visible = selectors.plans_visible(user=user)
    running = _with_progress(visible.filter(status__in=ACTIVE)).order_by("-created_at")[:20]
    recent = _with_progress(visible.exclude(status__in=ACTIVE)).order_by("-created_at")[:8]
    pending = approvals.approvals_visible(user=user, status="pending")
    return render(request, "streams/home.html", {
        **page_context(request), "running": running, "recent": recent, "pending": pending[:20],
        "pending_count": len(pending), "plan_count": visible.count(),
        "running_count": visible.filter(status__in=ACTIVE).count(),
    })


def _filtered(request: HttpRequest, user: User) -> tuple[QuerySet[Plan], dict[str, str]]:
    found = selectors.plans_visible(user=user)
    chosen = {name: request.GET.get(name, "").strip() for name in ("status", "q", "template", "period", "scope")}
    if chosen["scope"] != "all":
        found = found.filter(owner=user)
    if chosen["status"] in PlanStatus.values:
        found = found.filter(status=chosen["status"])
    else:
        chosen["status"] = ""
    if chosen["q"]:
        found = found.filter(request__icontains=chosen["q"][:200])
    if chosen["template"]:
        found = found.filter(template=chosen["template"][:100])
    if chosen["period"] in PERIODS:
        found = found.filter(created_at__gte=timezone.now() - PERIODS[chosen["period"]])
    else:
        chosen["period"] = ""
    return found, chosen


@login_required
@require_GET
def plan_list(request: HttpRequest) -> HttpResponse:
    """GET /plans/: the user's plans (staff who may view every plan: ``scope=all``), newest first, with
    status, age, cost and filters (status, text, template, period)."""
    user = cast(User, request.user)
    found, chosen = _filtered(request, user)
    page = Paginator(_with_progress(found).order_by("-created_at"), 50).get_page(request.GET.get("page"))
    templates = sorted({t for t in selectors.plans_visible(user=user).exclude(template="")
                        .values_list("template", flat=True).distinct()[:50]})
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "streams/plan_list.html", {
        **page_context(request), "page": page, "chosen": chosen, "statuses": PlanStatus.values,
        "templates": templates, "periods": list(PERIODS), "query": query.urlencode(),
        "may_see_all": user.is_staff and user.has_perm("orchestrator.view_plan"),
    })
