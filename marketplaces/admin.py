from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from marketplaces import selectors
from marketplaces.models import (
    AmazonOrder,
    ConnectionStatus,
    ExternalMessage,
    Mailbox,
    MailboxActivity,
    MailboxActivityKind,
    MarketplaceConnection,
    OAuthState,
    PollRun,
    QuarantinedMessage,
    SpApiDailyUsage,
)
from tickets.models import TicketMessage

M = TypeVar("M", bound=Model)


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    """Rows written by the OAuth flow and the poller: inspected here, changed through the product."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


class EffectiveStatusFilter(admin.SimpleListFilter):
    """The status the product shows: CONNECTED rows made with another SP-API app than the current
    AMAZON_SPAPI_APP_SOURCE read NEEDS_REAUTH (see marketplaces.selectors)."""

    title = "effective status"
    parameter_name = "effective_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return list(ConnectionStatus.choices)

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[MarketplaceConnection]
    ) -> QuerySet[MarketplaceConnection]:
        value = self.value()
        if not value:
            return queryset
        current = selectors.current_app_source()
        stale = Q(status=ConnectionStatus.CONNECTED) & ~Q(app_source=current)
        if value == ConnectionStatus.NEEDS_REAUTH:
            return queryset.filter(Q(status=ConnectionStatus.NEEDS_REAUTH) | stale)
        if value == ConnectionStatus.CONNECTED:
            return queryset.filter(status=ConnectionStatus.CONNECTED, app_source=current)
        return queryset.filter(status=value)


@admin.register(MarketplaceConnection)
class MarketplaceConnectionAdmin(admin.ModelAdmin[MarketplaceConnection]):
    list_display = [
        "selling_partner_id",
        "tenant",
        "type",
        "effective_status",
        "region",
        "app_source",
        "connected_at",
        "last_polled_at",
        "consecutive_failures",
        "last_error",
    ]
    list_filter = [EffectiveStatusFilter, "status", "type", "region", "app_source", "tenant"]
    search_fields = ["selling_partner_id", "tenant__slug", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    # Only the status may be set by hand (e.g. to force a re-authorization); the refresh token is
    # in the secret store and `secret_ref` is only its path.
    fields = [
        "tenant",
        "type",
        "status",
        "selling_partner_id",
        "region",
        "marketplace_ids",
        "app_source",
        "secret_ref",
        "connected_at",
        "disconnected_at",
        "last_polled_at",
        "next_poll_at",
        "poll_cursor",
        "lease_owner",
        "lease_expires_at",
        "last_error",
        "last_error_at",
        "consecutive_failures",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [f for f in fields if isinstance(f, str) and f != "status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[MarketplaceConnection]:
        return selectors.with_effective_status(super().get_queryset(request))

    @admin.display(description="status", ordering="effective_status")
    def effective_status(self, obj: MarketplaceConnection) -> str:
        status = getattr(obj, "effective_status", None) or selectors.connection_effective_status(obj)
        if status == ConnectionStatus.NEEDS_REAUTH and obj.status == ConnectionStatus.CONNECTED:
            return f"NEEDS_REAUTH (made with the {obj.app_source or 'unknown'} app)"
        return status

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MarketplaceConnection | None = None) -> bool:
        # A connection is disconnected, never deleted: its tickets keep its id (deleting the tenant
        # removes everything at once).
        return False


@admin.register(OAuthState)
class OAuthStateAdmin(ReadOnlyAdmin[OAuthState]):
    list_display = ["id", "tenant", "user", "type", "region", "marketplace_id", "created_at", "expires_at", "used_at"]
    list_filter = ["type", "region", "tenant"]
    search_fields = ["tenant__slug", "user__username"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "user"]
    exclude = ["state_hash"]


@admin.register(ExternalMessage)
class ExternalMessageAdmin(ReadOnlyAdmin[ExternalMessage]):
    list_display = [
        "external_id",
        "tenant",
        "connection",
        "type",
        "order_id",
        "sender",
        "subject",
        "sent_at",
        "created_at",
        "ticket",
    ]
    list_filter = ["type", "tenant"]
    search_fields = ["external_id", "order_id", "subject", "thread_key", "connection__selling_partner_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "connection"]
    readonly_fields = ["ticket"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExternalMessage]:
        # The ticket link is on the ticket side (TicketMessage.external_message_id): one subquery
        # for the whole page, not one query per row.
        filed = TicketMessage.objects.filter(external_message_id=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                ticket_id=Subquery(filed.values("ticket_id")[:1]),
                ticket_subject=Subquery(filed.values("ticket__subject")[:1]),
            )
        )

    @admin.display(description="ticket", ordering="ticket_id")
    def ticket(self, obj: ExternalMessage) -> str:
        ticket_id = getattr(obj, "ticket_id", None)
        if ticket_id is None:
            return "-"
        url = reverse("admin:tickets_ticket_change", args=[ticket_id])
        return format_html('<a href="{}">#{} {}</a>', url, ticket_id, getattr(obj, "ticket_subject", ""))


@admin.register(QuarantinedMessage)
class QuarantinedMessageAdmin(ReadOnlyAdmin[QuarantinedMessage]):
    list_display = ["external_id", "tenant", "connection", "reason", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["external_id", "reason", "connection__selling_partner_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "connection"]


@admin.register(PollRun)
class PollRunAdmin(ReadOnlyAdmin[PollRun]):
    """The poller's runs (written by poll_run; kept 35 days): the dashboard shows the last ten."""

    list_display = [
        "finished_at",
        "worker",
        "seconds",
        "connections",
        "fetched",
        "new_messages",
        "new_tickets",
        "quarantined",
        "recorded",
        "ignored",
        "skipped_old",
        "failures",
    ]
    search_fields = ["worker"]  # the host name is its first part
    date_hierarchy = "finished_at"
    ordering = ["-finished_at"]


@admin.register(Mailbox)
class MailboxAdmin(ReadOnlyAdmin[Mailbox]):
    """The relay mailboxes' settings (changed by the sellers through the API; the passwords are in
    the secret store, `imap_secret_ref` and `smtp_secret_ref` are only their paths)."""

    list_display = [
        "connection",
        "tenant",
        "imap_username",
        "imap_host",
        "imap_folder",
        "last_error",
        "smtp_host",
        "smtp_from_address",
        "smtp_last_error",
        "updated_at",
    ]
    list_filter = ["imap_security", "smtp_security", "tenant"]
    search_fields = ["imap_username", "imap_host", "tenant__slug", "connection__selling_partner_id"]
    list_select_related = ["tenant", "connection"]


class MatchedFilter(admin.SimpleListFilter):
    """Delivery failures and Seller Central copies that found no reply or ticket: for people to look at."""

    title = "matched to a ticket message"
    parameter_name = "matched"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No (delivery failures and copies only)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[MailboxActivity]) -> QuerySet[MailboxActivity]:
        if self.value() == "yes":
            return queryset.filter(matched_message_id__isnull=False)
        if self.value() == "no":
            return queryset.filter(
                matched_message_id__isnull=True,
                kind__in=[MailboxActivityKind.DELIVERY_FAILURE, MailboxActivityKind.SELLER_CENTRAL_COPY],
            )
        return queryset


@admin.register(MailboxActivity)
class MailboxActivityAdmin(ReadOnlyAdmin[MailboxActivity]):
    """What the relay mailboxes brought that is not a buyer's message: Amazon's notifications,
    delivery failures of replies, copies of replies written in Seller Central, ignored mail."""

    list_display = [
        "created_at",
        "kind",
        "notification_type",
        "tenant",
        "order_id",
        "subject",
        "reason",
        "matched_message_id",
    ]
    list_filter = ["kind", "notification_type", MatchedFilter, "tenant"]
    search_fields = ["external_id", "order_id", "subject", "relay_address", "refers_to_message_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]


@admin.register(AmazonOrder)
class AmazonOrderAdmin(ReadOnlyAdmin[AmazonOrder]):
    """Orders fetched from SP-API for open tickets (sync_orders): what Amazon said, and when the
    next fetch is due (a backoff after "not found yet" or a failure)."""

    list_display = ["order_id", "tenant", "connection", "fetched_at", "next_fetch_at", "failures", "last_error"]
    list_filter = ["tenant"]
    search_fields = ["order_id", "connection__selling_partner_id", "tenant__slug"]
    list_select_related = ["tenant", "connection"]


@admin.register(SpApiDailyUsage)
class SpApiDailyUsageAdmin(ReadOnlyAdmin[SpApiDailyUsage]):
    list_display = ["day", "calls", "throttled", "failures"]
    ordering = ["-day"]
