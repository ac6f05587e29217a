"""Inputs and outputs of the Amazon connection endpoints (camelCase, as the runbook's `authUrl`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplaces.models import ConnectionStatus

SELLER_ID_PATTERN = r"^[A-Za-z0-9]{1,64}$"
_MISSING: dict[str, Any] = {"required": "missing parameter", "blank": "missing parameter", "null": "missing parameter"}


# What start accepts: the service checks the value itself (invalid_marketplace, invalid_region);
# the patterns only tell clients the shape.
MARKETPLACE_PATTERN = r"^[A-Za-z0-9]{0,32}$"
REGION_PATTERN = r"^([Nn][Aa]|[Ee][Uu]|[Ff][Ee]|us-east-1|eu-west-1|us-west-2)?$"


@extend_schema_field({"type": "string", "pattern": MARKETPLACE_PATTERN, "maxLength": 32})
class MarketplaceField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "pattern": REGION_PATTERN, "maxLength": 16})
class RegionField(serializers.CharField):
    pass


class OAuthStartInputSerializer(serializers.Serializer):
    marketplace = MarketplaceField(
        max_length=32,
        required=False,
        allow_blank=True,
        help_text="Country code (FR, US, JP, UK…) or marketplace id (A13V1IB3VIYZZH). Default: the app's region.",
    )
    region = RegionField(
        max_length=16,
        required=False,
        allow_blank=True,
        help_text="NA, EU or FE (or us-east-1, eu-west-1, us-west-2); only needed without a marketplace.",
    )


class OAuthStartSerializer(serializers.Serializer):
    authUrl = serializers.URLField()  # the runbook's wire names (camelCase)
    expiresAt = serializers.DateTimeField()
    message = serializers.CharField()
    region = serializers.CharField()
    marketplaceId = serializers.CharField(allow_blank=True)


class OAuthCallbackQuerySerializer(serializers.Serializer):
    """What Amazon appends to the redirect URI: `spapi_oauth_code`, `state`, `selling_partner_id`
    (or `error`/`error_description` when the authorization did not happen)."""

    state = serializers.CharField(max_length=512, error_messages=_MISSING)
    spapi_oauth_code = serializers.CharField(max_length=1024, required=False, allow_blank=True)
    selling_partner_id = serializers.CharField(max_length=64, required=False, allow_blank=True)
    error = serializers.CharField(max_length=256, required=False, allow_blank=True)
    error_description = serializers.CharField(max_length=1024, required=False, allow_blank=True)

    def validate(self, data: dict) -> dict:
        if data.get("error"):
            return data
        errors = {}
        if not data.get("spapi_oauth_code"):
            errors["spapi_oauth_code"] = "missing parameter"
        seller = data.get("selling_partner_id", "")
        if not seller:
            errors["selling_partner_id"] = "missing parameter"
        elif not seller.isascii() or not seller.isalnum():
            errors["selling_partner_id"] = "must be letters and digits only"
        if errors:
            raise serializers.ValidationError(errors)
        return data


class ConnectionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ConnectionStatus.choices, source="effective_status")
    sellingPartnerId = serializers.CharField(source="selling_partner_id")
    region = serializers.CharField()
    marketplaceIds = serializers.ListField(child=serializers.CharField(), source="marketplace_ids")
    appSource = serializers.CharField(source="app_source")
    connectedAt = serializers.DateTimeField(source="connected_at", allow_null=True)
    disconnectedAt = serializers.DateTimeField(source="disconnected_at", allow_null=True)
    lastPolledAt = serializers.DateTimeField(source="last_polled_at", allow_null=True)
    lastError = serializers.CharField(source="last_error", allow_blank=True)
    lastErrorAt = serializers.DateTimeField(source="last_error_at", allow_null=True)
    messageCount = serializers.IntegerField(source="message_count", required=False)
    ticketCount = serializers.IntegerField(source="ticket_count", required=False)


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField(
        help_text="CONNECTED if one connection is, else the most telling status, or NOT_CONNECTED when there is none."
    )
    connected = serializers.BooleanField()
    appSource = serializers.CharField(help_text="The SP-API app in use (AMAZON_SPAPI_APP_SOURCE).")
    connections = ConnectionSerializer(many=True)


class DisconnectInputSerializer(serializers.Serializer):
    sellingPartnerId = serializers.RegexField(
        SELLER_ID_PATTERN,
        required=False,
        allow_blank=True,
        help_text="Which seller to disconnect; required when the tenant has several connections.",
    )
    selling_partner_id = serializers.RegexField(
        SELLER_ID_PATTERN, required=False, allow_blank=True, help_text="Same as sellingPartnerId."
    )


class DisconnectSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField()
    connections = ConnectionSerializer(many=True)
