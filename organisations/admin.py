"""Organisations and memberships in the admin: superusers manage tenants (an organisation's admins act
through the API and their own organisation's approval queue)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from organisations.models import Membership, Organisation


class SuperuserOnly:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_module_permission(request)


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(SuperuserOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "shared_plans", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(SuperuserOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role", "organisation"]
    search_fields = ["user__username", "organisation__name"]
    list_select_related = ["user", "organisation"]
