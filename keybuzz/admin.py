from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from keybuzz.models import AiUsage, Membership, Tenant


class MembershipInline(admin.TabularInline[Membership, Tenant]):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin[Tenant]):
    list_display = ["slug", "name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["slug", "name", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    date_hierarchy = "created_at"
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]
    list_select_related = ["user", "tenant"]


@admin.register(AiUsage)
class AiUsageAdmin(admin.ModelAdmin[AiUsage]):
    """Each tenant's AI gateway calls per UTC day, as the daily limit counts them: read only (the
    quota service alone writes them)."""

    list_display = ["tenant", "day", "calls"]
    list_filter = ["day"]
    search_fields = ["tenant__slug"]
    list_select_related = ["tenant"]
    date_hierarchy = "day"
    readonly_fields = ["tenant", "day", "calls"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
