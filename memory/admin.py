"""Admin pages: memories are shown decrypted (read-only) to staff with the view permission."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from memory import crypto
from memory.models import MemoryItem, MemoryRetention, WorkingEntry


@admin.register(MemoryItem)
class MemoryItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "owner", "kind", "agent", "tier", "significance", "recall_count", "last_action", "created_at")
    list_filter = ("kind", "tier", "last_action")
    search_fields = ("owner__username", "agent", "source")
    fields = ("owner", "kind", "agent", "plan_id", "step_key", "source", "text", "tier", "significance", "revisions",
              "last_action", "recall_count", "last_recalled_at", "created_at", "updated_at", "expires_at")
    readonly_fields = fields

    @admin.display(description="text (decrypted)")
    def text(self, obj: MemoryItem) -> str:
        return crypto.unseal(obj.content)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MemoryItem | None = None) -> bool:
        return False


@admin.register(WorkingEntry)
class WorkingEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("plan_id", "name", "version", "written_by", "owner", "updated_at")
    search_fields = ("plan_id", "name")
    fields = ("owner", "plan_id", "name", "value_json", "version", "written_by", "updated_at")
    readonly_fields = fields

    @admin.display(description="value (decrypted)")
    def value_json(self, obj: WorkingEntry) -> str:
        return crypto.unseal(obj.value)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkingEntry | None = None) -> bool:
        return False


@admin.register(MemoryRetention)
class MemoryRetentionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("owner", "ttl_days")
