from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: nobody adds, changes or deletes audit entries (the database refuses the last two anyway)."""

    list_display = ["at", "actor_name", "action", "target", "status_code", "ip"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target", "=plan_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
