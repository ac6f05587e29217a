"""Amazon's Messaging API actions on a ticket: thin views over `marketplaces.services.messaging`."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from keybuzz.api import TenantAPIView
from keybuzz.serializers import ErrorSerializer, InputSerializer
from marketplaces.services import messaging
from tickets.serializers import TicketMessageSerializer


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


TICKET_ID = OpenApiParameter("ticket_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Ticket id.")
ACTION = OpenApiParameter(
    "action", OpenApiTypes.STR, OpenApiParameter.PATH, description="e.g. `confirmDeliveryDetails`."
)
COMMON_ERRORS = {
    401: _error("`not_authenticated`, `token_not_valid`."),
    403: _error("`membership_revoked`, `tenant_inactive`."),
    409: _error(
        "`not_an_amazon_ticket`, `ticket_without_order`, `connection_missing`, `marketplace_unknown` (the order "
        "context is not fetched yet), `amazon_forbidden` (the seller's app lacks the Messaging role)."
    ),
    429: _error("`amazon_throttled`: Amazon is throttling this seller; try again in a minute."),
    502: _error("`amazon_unavailable`."),
}


class ActionChoiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    allowed = serializers.BooleanField(help_text="Amazon offers this action for the order right now.")
    minLength = serializers.IntegerField(source="min_length")
    maxLength = serializers.IntegerField(source="max_length")


class OrderActionsSerializer(serializers.Serializer):
    orderId = serializers.CharField(source="order_id")
    marketplaceId = serializers.CharField(source="marketplace_id")
    actions = ActionChoiceSerializer(many=True)


class ActionInputSerializer(InputSerializer):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=10_000)
    attachments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=100,
        help_text="Files uploaded to the ticket (POST …/attachments/), for confirmCustomizationDetails only.",
    )
    acknowledgeViolations = serializers.BooleanField(required=False, default=False)


class TicketAmazonActionsView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_amazon_actions",
        summary="The Amazon messaging actions for the ticket's order",
        description="Asks Amazon (getMessagingActionsForOrder) which of the actions KeyBuzz offers the order "
        "allows now, with each action's text length limits.",
        parameters=[TICKET_ID],
        responses={
            200: OrderActionsSerializer,
            **COMMON_ERRORS,
            404: _error("`not_found` (no such ticket in the tenant), `amazon_order_not_found`."),
        },
        tags=["tickets"],
    )
    def get(self, request: Request, ticket_id: int) -> Response:
        found = messaging.amazon_actions_list(tenant=self.tenant, ticket_id=ticket_id)
        return Response(OrderActionsSerializer(found).data)


class TicketAmazonActionView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_amazon_action_send",
        summary="Send an Amazon messaging action about the ticket's order",
        description="Queued like a reply (send_replies delivers it through SP-API; retries, FAILED and the retry "
        "endpoint work the same) and shown on the ticket as an OUTBOUND message with `origin: amazon_messaging` "
        "and its `action`.",
        parameters=[TICKET_ID, ACTION],
        request=ActionInputSerializer,
        responses={
            201: TicketMessageSerializer,
            400: _error(
                "`text_length` (details: min, max, length), `attachments_not_allowed`, `too_many_attachments`, "
                "`body_empty`, `invalid_input`."
            ),
            **COMMON_ERRORS,
            404: _error("`not_found` (no such ticket in the tenant), `unknown_action`."),
            422: _error("`reply_policy_violation`: as for replies; send `acknowledgeViolations: true` to send anyway."),
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int, action: str) -> Response:
        data = ActionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)  # 400 invalid_input, in the API's one shape
        message = messaging.amazon_action_queue(
            tenant=self.tenant,
            ticket_id=ticket_id,
            author=self.user,
            action=action,
            text=data.validated_data["text"],
            attachment_ids=data.validated_data["attachments"],
            acknowledge_violations=data.validated_data["acknowledgeViolations"],
        )
        return Response(TicketMessageSerializer(message).data, status=201)
