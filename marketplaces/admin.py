from django.contrib import admin

from marketplaces.models import ExternalMessage, MarketplaceConnection, OAuthState


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the OAuth flow and the poller: inspected here, changed through the product."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MarketplaceConnection)
class MarketplaceConnectionAdmin(admin.ModelAdmin):
    list_display = ["selling_partner_id", "tenant", "type", "status", "region", "app_source",
                    "connected_at", "last_polled_at", "consecutive_failures", "last_error"]
    list_filter = ["status", "type", "region", "app_source", "tenant"]
    search_fields = ["selling_partner_id", "tenant__slug", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    # Only the status may be set by hand (e.g. to force a re-authorization); the refresh token is
    # in the secret store and `secret_ref` is only its path.
    fields = ["tenant", "type", "status", "selling_partner_id", "region", "marketplace_ids", "app_source",
              "secret_ref", "connected_at", "disconnected_at", "last_polled_at", "next_poll_at", "poll_cursor",
              "lease_owner", "lease_expires_at", "last_error", "last_error_at", "consecutive_failures",
              "created_at", "updated_at"]
    readonly_fields = [f for f in fields if f != "status"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(OAuthState)
class OAuthStateAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "user", "type", "region", "marketplace_id", "created_at", "expires_at", "used_at"]
    list_filter = ["type", "region", "tenant"]
    search_fields = ["tenant__slug", "user__username"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "user"]
    exclude = ["state_hash"]


@admin.register(ExternalMessage)
class ExternalMessageAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "tenant", "connection", "type", "order_id", "sender", "subject", "sent_at",
                    "created_at", "ticket"]
    list_filter = ["type", "tenant"]
    search_fields = ["external_id", "order_id", "subject", "thread_key", "connection__selling_partner_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "connection"]
