"""Input parsing and output shapes of the tickets API (no business rules here: see services)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keybuzz.serializers import InputSerializer, QuerySerializer
from tickets.assist import LANGUAGES
from tickets.models import (
    MESSAGE_FIGURES,
    Attachment,
    Channel,
    DeliveryStatus,
    Direction,
    Ticket,
    TicketMessage,
    TicketStatus,
)
from tickets.pagination import ORDERINGS
from tickets.services import MessageKind

# --- Inputs -----------------------------------------------------------------------------------


class TicketListQuerySerializer(QuerySerializer):
    """The list's query parameters; the OpenAPI schema documents them from here."""

    status = serializers.ListField(
        child=serializers.ChoiceField(choices=TicketStatus.choices),
        required=False,
        help_text="Repeat (`status=OPEN&status=PENDING`) or comma-separate (`status=OPEN,PENDING`).",
    )
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    assignee = serializers.RegexField(
        r"^(me|none|[0-9]{1,18})$",
        required=False,
        error_messages={"invalid": "Use `me`, `none` or a user id."},
        help_text="`me`, `none` (unassigned) or a user id.",
    )
    connection = serializers.UUIDField(required=False, help_text="A marketplace connection id.")
    overdue = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="`true`: unanswered past the response due time; `false`: the others.",
    )
    q = serializers.CharField(
        required=False,
        max_length=200,
        allow_blank=True,
        default="",
        help_text="Text in the subject, customer, order id or any message.",
    )
    ordering = serializers.ChoiceField(
        choices=list(ORDERINGS),
        required=False,
        help_text="Default `-last_message_at` (newest activity first); "
        "`response_due_at`: most urgent first, tickets without a due time last.",
    )
    # Checked (and refused as invalid_cursor) by tickets.pagination.decode_cursor.
    cursor = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="From the previous page's `next` link."
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31, help_text="Page size (default 25; more than 100 gives 100)."
    )


class TicketUpdateSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=TicketStatus.choices, required=False)
    assignee = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A member's user id; null unassigns."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send `status` and/or `assignee`.", code="nothing_to_update")
        return attrs


class TicketMessageCreateSerializer(InputSerializer):
    # Emptiness and length are checked by the service (codes body_empty, body_too_long).
    body = serializers.CharField(allow_blank=True, trim_whitespace=False)
    type = serializers.ChoiceField(
        choices=[k.value for k in MessageKind],
        default=MessageKind.REPLY.value,
        help_text="`reply` (sent to the buyer) or `note` (internal, never sent).",
    )
    attachments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=100,  # the service says how many a reply may carry (5)
        help_text="Ids of files uploaded to this ticket (POST …/attachments/), sent with the reply (at most 5).",
    )
    acknowledgeViolations = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Send the reply although the marketplace's content rules flag it (422 "
        "`reply_policy_violation` otherwise); recorded on the message.",
    )


class AttachmentUploadSerializer(InputSerializer):
    file = serializers.FileField(
        allow_empty_file=True, help_text="One file: an image (JPEG, PNG, GIF), a PDF or plain text, at most 10 MB."
    )


# --- Outputs ----------------------------------------------------------------------------------


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField()

    def get_name(self, user: User) -> str:
        return user.get_full_name() or user.username


class CustomerSerializer(serializers.Serializer):
    name = serializers.CharField(source="customer_name")
    ref = serializers.CharField(source="customer_ref")


class PreviewSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=Direction.choices, source="preview_direction")
    author_name = serializers.CharField(source="preview_author_name")
    body = serializers.CharField(source="preview_body")
    sent_at = serializers.DateTimeField(source="preview_sent_at")


class CountsSerializer(serializers.Serializer):
    messages = serializers.IntegerField(source="message_count", help_text="Buyer messages and replies.")
    notes = serializers.IntegerField(source="note_count")
    failed = serializers.IntegerField(source="failed_count", help_text="Replies that could not be delivered.")


class TicketRowSerializer(serializers.ModelSerializer):
    """A ticket as the list shows it (the queryset comes from selectors.ticket_queryset)."""

    customer = CustomerSerializer(source="*")
    assignee = UserRefSerializer(allow_null=True)
    connection = serializers.UUIDField(source="connection_id", allow_null=True)
    last_message = serializers.SerializerMethodField()
    counts = CountsSerializer(source="*")
    overdue = serializers.BooleanField(source="is_overdue")
    last_inbound_at = serializers.DateTimeField(allow_null=True)
    last_reply_at = serializers.DateTimeField(allow_null=True)
    order_status = serializers.SerializerMethodField(
        help_text="The order's status as the marketplace last gave it (e.g. Shipped); null until fetched."
    )

    class Meta:
        model = Ticket
        fields = [
            "id",
            "subject",
            "customer",
            "order_id",
            "order_status",
            "channel",
            "connection",
            "status",
            "assignee",
            "last_message",
            "counts",
            "last_message_at",
            "last_inbound_at",
            "last_reply_at",
            "response_due_at",
            "overdue",
            "created_at",
            "updated_at",
        ]

    def get_order_status(self, ticket: Ticket) -> str | None:
        context = ticket.order_context if isinstance(ticket.order_context, dict) else {}
        status = context.get("status")
        return status if isinstance(status, str) and status else None

    @extend_schema_field(PreviewSerializer(allow_null=True))
    def get_last_message(self, ticket: Ticket) -> dict[str, Any] | None:
        # preview_* are columns of the ticket, NULL while it has no buyer message nor reply.
        if ticket.preview_direction is None:
            return None
        return dict(PreviewSerializer(ticket).data)


# The list's rows as plain dicts: TicketRowSerializer's output, written without DRF's field machinery.
# A 100-row page through the nested ModelSerializer costs 48 ms of Python on the 2-core benchmark
# machine (17 field objects and three nested serializers a row); this function 4 ms. TicketRowSerializer stays the
# documented shape (OpenAPI) and tests/tickets/test_fast_paths.py checks the two agree.
TICKET_ROW_VALUES = (
    "id",
    "subject",
    "customer_name",
    "customer_ref",
    "order_id",
    "order_status",  # tickets.rows: the status alone, not the whole order context
    "channel",
    "connection_id",
    "status",
    "assignee_id",
    "assignee__username",
    "assignee__first_name",
    "assignee__last_name",
    *MESSAGE_FIGURES,  # preview_direction, _author_name, _body, _sent_at; message_, note_, failed_count
    "last_message_at",
    "last_inbound_at",
    "last_reply_at",
    "response_due_at",
    "is_overdue",
    "created_at",
    "updated_at",
)


TICKET_DETAIL_VALUES = (*TICKET_ROW_VALUES, "thread_key", "order_context", "order_context_at")


def _in_zone(value: datetime | None, zone: tzinfo) -> datetime | None:
    """DRF's DateTimeField output once rendered: the datetime in the current time zone, which the
    API's renderer writes as DRF does (ISO 8601, UTC as `Z`). Left to orjson rather than formatted
    here: 0.2 instead of 3.9 us each, and a ticket page holds 175 of them."""
    if value is None or value.tzinfo is zone:
        return value
    return value.astimezone(zone)


def _output_zone() -> tzinfo:
    """The current time zone, as the very object the database's values come with when it is UTC
    (the default), so that _in_zone leaves them as they are (0.8 us each otherwise)."""
    zone = timezone.get_current_timezone()
    return UTC if getattr(zone, "key", None) == "UTC" else zone


def _user_name(username: str, first_name: str, last_name: str) -> str:
    return f"{first_name} {last_name}".strip() or username  # User.get_full_name() or the username


def ticket_rows_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TicketRowSerializer(many=True).data, once rendered, for rows of `.values(*TICKET_ROW_VALUES)`."""
    zone = _output_zone()
    return [_ticket_row_data(row, zone) for row in rows]


def _ticket_row_data(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    assignee_id = row["assignee_id"]
    connection_id = row["connection_id"]
    direction = row["preview_direction"]
    return {
        "id": row["id"],
        "subject": row["subject"],
        "customer": {"name": row["customer_name"], "ref": row["customer_ref"]},
        "order_id": row["order_id"],
        "order_status": row["order_status"],
        "channel": row["channel"],
        "connection": None if connection_id is None else str(connection_id),
        "status": row["status"],
        "assignee": None
        if assignee_id is None
        else {
            "id": assignee_id,
            "username": row["assignee__username"],
            "name": _user_name(row["assignee__username"], row["assignee__first_name"], row["assignee__last_name"]),
        },
        "last_message": None
        if direction is None
        else {
            "direction": direction,
            "author_name": row["preview_author_name"],
            "body": row["preview_body"],
            "sent_at": _in_zone(row["preview_sent_at"], zone),
        },
        "counts": {"messages": row["message_count"], "notes": row["note_count"], "failed": row["failed_count"]},
        "last_message_at": _in_zone(row["last_message_at"], zone),
        "last_inbound_at": _in_zone(row["last_inbound_at"], zone),
        "last_reply_at": _in_zone(row["last_reply_at"], zone),
        "response_due_at": _in_zone(row["response_due_at"], zone),
        "overdue": bool(row["is_overdue"]),
        "created_at": _in_zone(row["created_at"], zone),
        "updated_at": _in_zone(row["updated_at"], zone),
    }


def ticket_detail_data(
    row: dict[str, Any], messages: Iterable[TicketMessage], files: dict[int, list[Attachment]]
) -> dict[str, Any]:
    """TicketDetailSerializer's output, once rendered, for a row of `.values(*TICKET_DETAIL_VALUES)` and the ticket's
    messages (their author and attachments fetched with them)."""
    zone = _output_zone()
    context, fetched_at = row["order_context"], row["order_context_at"]
    return {
        **_ticket_row_data(row, zone),
        "thread_key": row["thread_key"],
        "order": {**context, "fetchedAt": _in_zone(fetched_at, zone)}
        if isinstance(context, dict) and fetched_at is not None
        else None,
        "messages": [_message_data(message, zone, files.get(message.pk, [])) for message in messages],
    }


def _message_data(message: TicketMessage, zone: tzinfo, files: list[Attachment]) -> dict[str, Any]:
    """TicketMessageSerializer's output, without its field objects."""
    author = message.author
    outbound = message.direction == Direction.OUTBOUND
    violations = message.acknowledged_violations
    return {
        "id": message.pk,
        "direction": message.direction,
        "author": None
        if author is None
        else {"id": author.pk, "username": author.username, "name": author.get_full_name() or author.username},
        "author_name": message.author_name,
        "body": message.body,
        "sent_at": _in_zone(message.sent_at, zone),
        "created_at": _in_zone(message.created_at, zone),
        "delivery": {
            "status": message.delivery_status,
            "attempts": message.delivery_attempts,
            "next_attempt_at": _in_zone(message.next_attempt_at, zone),
            "delivered_at": _in_zone(message.delivered_at, zone),
            "error": message.delivery_error,
        }
        if outbound
        else None,
        "attachments": [
            {"id": a.pk, "filename": a.filename, "contentType": a.content_type, "size": a.size} for a in files
        ],
        "origin": message.origin or ("buyer" if message.direction == Direction.INBOUND else "keybuzz"),
        "action": message.channel_action,
        # Rare (a reply sent despite a content rule): DRF's own field checks what was stored.
        "acknowledged_violations": list(ViolationSerializer(violations, many=True).data) if violations else [],
    }


class DeliverySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, source="delivery_status")
    attempts = serializers.IntegerField(source="delivery_attempts")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(source="delivery_error", help_text="Why the last attempt failed, if it did.")


class AttachmentSerializer(serializers.ModelSerializer):
    # The wire names the attachments feature was specified with (camelCase, as the Amazon endpoints).
    contentType = serializers.CharField(source="content_type")

    class Meta:
        model = Attachment
        fields = ["id", "filename", "contentType", "size"]


class ViolationSerializer(serializers.Serializer):
    rule = serializers.CharField(help_text="`link`, `email_address`, `phone_number` or `html`.")
    text = serializers.CharField(help_text="The passage, exactly as in the body (body[start:end]).")
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    message = serializers.CharField(help_text="What to change.")


class TicketMessageSerializer(serializers.ModelSerializer):
    author = UserRefSerializer(allow_null=True)
    delivery = serializers.SerializerMethodField()
    origin = serializers.SerializerMethodField(
        help_text="`buyer` (received), `keybuzz` (an agent here), or the channel's own tool that wrote a reply "
        "(`seller_central`, or `amazon_messaging` for an Amazon Messaging API action sent from here)."
    )
    acknowledged_violations = ViolationSerializer(
        many=True, read_only=True, help_text="Content rules the agent chose to send the reply despite."
    )
    action = serializers.CharField(
        source="channel_action",
        allow_blank=True,
        help_text="A structured message sent through the marketplace's own API (Amazon: e.g. "
        "`confirmDeliveryDetails`, origin `amazon_messaging`); empty for a reply by e-mail.",
    )
    attachments = AttachmentSerializer(
        many=True,
        read_only=True,
        help_text="Files of the message; download one at /api/v1/tickets/{id}/attachments/{attachment_id}.",
    )

    class Meta:
        model = TicketMessage
        fields = [
            "id",
            "direction",
            "author",
            "author_name",
            "body",
            "sent_at",
            "created_at",
            "delivery",
            "attachments",
            "origin",
            "action",
            "acknowledged_violations",
        ]

    def get_origin(self, message: TicketMessage) -> str:
        return message.origin or ("buyer" if message.direction == Direction.INBOUND else "keybuzz")

    @extend_schema_field(DeliverySerializer(allow_null=True))
    def get_delivery(self, message: TicketMessage) -> dict[str, Any] | None:
        if message.direction != Direction.OUTBOUND:
            return None
        return DeliverySerializer(message).data


class OrderItemSerializer(serializers.Serializer):
    asin = serializers.CharField()
    sku = serializers.CharField()
    title = serializers.CharField()
    quantity = serializers.IntegerField()
    price = serializers.CharField(help_text='Decimal string, e.g. "29.99"; empty when unknown.')
    currency = serializers.CharField()


class OrderPackageSerializer(serializers.Serializer):
    carrier = serializers.CharField()
    trackingNumber = serializers.CharField()
    status = serializers.CharField()


class OrderContextSerializer(serializers.Serializer):
    """The order as the marketplace described it (Amazon: SP-API getOrder), kept as it was fetched."""

    orderId = serializers.CharField()
    status = serializers.CharField()
    purchaseDate = serializers.CharField()
    latestShipDate = serializers.CharField()
    latestDeliveryDate = serializers.CharField()
    marketplaceId = serializers.CharField()
    fulfillmentChannel = serializers.CharField(help_text="`AMAZON` (FBA), `MERCHANT`, or empty.")
    items = OrderItemSerializer(many=True)
    packages = OrderPackageSerializer(many=True)
    fetchedAt = serializers.DateTimeField()


class TicketDetailSerializer(TicketRowSerializer):
    messages = serializers.SerializerMethodField()
    order = serializers.SerializerMethodField(help_text="null until the order was fetched (sync_orders).")

    class Meta(TicketRowSerializer.Meta):
        fields = [*TicketRowSerializer.Meta.fields, "thread_key", "order", "messages"]

    @extend_schema_field(OrderContextSerializer(allow_null=True))
    def get_order(self, ticket: Ticket) -> dict[str, Any] | None:
        if not isinstance(ticket.order_context, dict) or ticket.order_context_at is None:
            return None
        return {
            **ticket.order_context,
            "fetchedAt": serializers.DateTimeField().to_representation(ticket.order_context_at),
        }

    @extend_schema_field(TicketMessageSerializer(many=True))
    def get_messages(self, ticket: Ticket) -> list[dict[str, Any]]:
        return list(TicketMessageSerializer(self.context["messages"], many=True).data)


class TicketPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last one.")
    next_cursor = serializers.CharField(allow_null=True)
    results = TicketRowSerializer(many=True)


class TicketStatsSerializer(serializers.Serializer):
    by_status = serializers.DictField(child=serializers.IntegerField())
    total = serializers.IntegerField()
    unassigned = serializers.IntegerField(help_text="OPEN or PENDING, nobody assigned.")
    assigned_to_me = serializers.IntegerField(help_text="OPEN or PENDING, assigned to the caller.")
    unanswered = serializers.IntegerField(help_text="OPEN or PENDING with a buyer message not yet answered.")
    overdue = serializers.IntegerField(help_text="Unanswered past the response due time.")
    oldest_unanswered_since = serializers.DateTimeField(allow_null=True)
    oldest_unanswered_ticket_id = serializers.IntegerField(allow_null=True)
    oldest_unanswered_age_seconds = serializers.IntegerField(allow_null=True)


# --- AI help (tickets.assist) -------------------------------------------------------------------


class TranslateInputSerializer(InputSerializer):
    # The service checks the code against its list (case-insensitively); the schema lists them.
    to = serializers.CharField(
        max_length=16,
        help_text="ISO 639-1 code of the language to translate into: " + ", ".join(f"`{c}`" for c in LANGUAGES) + ".",
    )

    def validate_to(self, value: str) -> str:
        code = value.strip().lower()
        if code not in LANGUAGES:
            raise serializers.ValidationError(f"Unsupported language; use one of {', '.join(LANGUAGES)}.")
        return code


class ReplyDraftSerializer(serializers.Serializer):
    draft = serializers.CharField(help_text="The suggested reply, the tenant's signature included. Not sent.")
    language = serializers.CharField(help_text="ISO 639-1 code of the buyer's language (`und` when unknown).")
    violations = ViolationSerializer(
        many=True,
        help_text="What the channel's content rules flag in the draft (as a reply's 422 would); "
        "posting the draft unchanged needs `acknowledgeViolations`.",
    )


class TranslationSerializer(serializers.Serializer):
    messageId = serializers.IntegerField(source="message_id")
    language = serializers.CharField()
    text = serializers.CharField()
    cached = serializers.BooleanField(help_text="Served from the cache: no call to the AI gateway.")
