"""The admin's "Agents" page: every agent with its kind, queue, health, circuit breaker state and
calls in flight, read from the registry and Redis; staff with the change permission may close a
breaker by hand."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from agents.api import AgentError, agent_breaker_reset, agent_list, agent_status
from agents.models import AgentBoard


@admin.register(AgentBoard)
class AgentBoardAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and self.has_change_permission(request):
            try:
                agent_breaker_reset(request.POST.get("agent", ""))
                messages.success(request, f"closed the breaker of {request.POST.get('agent')}")
            except AgentError as exc:
                messages.error(request, exc.message)
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": "Agents",
            "opts": self.model._meta,
            "statuses": [agent_status(spec.name) for spec in agent_list()],
            "can_reset": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/agents/board.html", context)
