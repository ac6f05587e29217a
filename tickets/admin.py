from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tickets.models import Attachment, MessageTranslation, Ticket, TicketMessage

MESSAGE_FIELDS = (
    "direction",
    "origin",
    "author",
    "author_name",
    "body",
    "delivery_status",
    "delivery_attempts",
    "delivery_error",
    "sent_at",
)


class TicketMessageInline(admin.TabularInline[TicketMessage, Ticket]):
    model = TicketMessage
    extra = 0
    can_delete = False
    fields = MESSAGE_FIELDS
    readonly_fields = MESSAGE_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False


class AttachmentInline(admin.TabularInline[Attachment, Ticket]):
    """The ticket's files, as listed to agents (the bytes are downloaded through the API)."""

    model = Attachment
    extra = 0
    can_delete = False
    fields = ("message", "filename", "content_type", "size", "sha256", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin[Ticket]):
    list_display = [
        "id",
        "subject",
        "tenant",
        "channel",
        "status",
        "customer_name",
        "order_id",
        "assignee",
        "last_message_at",
        "response_due_at",
    ]
    list_filter = ["status", "channel", "tenant"]
    search_fields = ["subject", "order_id", "customer_name", "thread_key"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "assignee"]
    readonly_fields = [
        "tenant",
        "channel",
        "connection_id",
        "thread_key",
        "customer_name",
        "customer_ref",
        "order_id",
        "order_summary",
        "order_context",
        "order_context_at",
        "last_message_at",
        "response_due_at",
        "created_at",
        "updated_at",
        # Kept by the database from the messages (migration tickets 0015): shown, never edited.
        "message_count",
        "note_count",
        "failed_count",
    ]
    raw_id_fields = ["assignee"]
    inlines = [TicketMessageInline, AttachmentInline]

    @admin.display(description="order")
    def order_summary(self, ticket: Ticket) -> str:
        """The order context in one line: status, items, packages (the JSON follows in full)."""
        context = ticket.order_context if isinstance(ticket.order_context, dict) else None
        if context is None:
            return "not fetched yet"
        items = ", ".join(f"{i.get('quantity')} x {i.get('title') or i.get('asin')}" for i in context.get("items", []))
        packages = ", ".join(
            f"{p.get('carrier')} {p.get('trackingNumber')} ({p.get('status')})" for p in context.get("packages", [])
        )
        return " · ".join(part for part in (str(context.get("status", "")), items, packages) if part)


@admin.register(TicketMessage)
class TicketMessageAdmin(admin.ModelAdmin[TicketMessage]):
    list_display = [
        "id",
        "ticket",
        "tenant",
        "direction",
        "author_name",
        "delivery_status",
        "delivery_attempts",
        "sent_at",
    ]
    list_filter = ["direction", "origin", "delivery_status", "tenant"]
    search_fields = ["body", "ticket__subject", "ticket__order_id", "delivery_ref"]
    date_hierarchy = "sent_at"
    list_select_related = ["tenant", "ticket"]
    readonly_fields = [
        "tenant",
        "ticket",
        "direction",
        "author",
        "author_name",
        "body",
        "external_message_id",
        "delivery_status",
        "delivery_error",
        "delivery_attempts",
        "next_attempt_at",
        "delivered_at",
        "delivery_ref",
        "send_started_at",
        "origin",
        "acknowledged_violations",
        "stopped_response_due_at",
        "sent_at",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(MessageTranslation)
class MessageTranslationAdmin(admin.ModelAdmin[MessageTranslation]):
    """The AI translations cached on messages: read only (a wrong one is deleted, and the next
    request translates again)."""

    list_display = ["message", "language", "tenant", "model", "created_at"]
    list_filter = ["language"]
    search_fields = ["tenant__slug", "message__ticket__id"]
    list_select_related = ["tenant", "message"]
    readonly_fields = ["tenant", "message", "language", "text", "model", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
