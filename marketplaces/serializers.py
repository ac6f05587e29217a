"""Inputs and outputs of the Amazon connection endpoints (camelCase, as the runbook's `authUrl`)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keybuzz.serializers import InputSerializer
from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.selectors import connection_mailbox_state

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


class OAuthStartInputSerializer(InputSerializer):
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


class ConnectionMailboxSerializer(serializers.Serializer):
    configured = serializers.BooleanField()
    message = serializers.CharField(help_text="e.g. 'no mailbox configured'.")
    lastError = serializers.CharField(allow_blank=True)
    lastErrorAt = serializers.DateTimeField(allow_null=True)
    smtpConfigured = serializers.BooleanField(help_text="Replies are sent by SMTP from the seller's address.")
    smtpLastError = serializers.CharField(
        allow_blank=True, help_text="The last SMTP login failure (check or send), e.g. a changed password."
    )
    smtpLastErrorAt = serializers.DateTimeField(allow_null=True)


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
    spapiError = serializers.CharField(
        source="spapi_error",
        allow_blank=True,
        help_text="SP-API refused a role KeyBuzz needs (order context): no call is made until Amazon is reconnected.",
    )
    messageCount = serializers.IntegerField(source="message_count", required=False)
    ticketCount = serializers.IntegerField(source="ticket_count", required=False)
    mailbox = serializers.SerializerMethodField(help_text="The relay mailbox buyers' messages are read from.")

    @extend_schema_field(ConnectionMailboxSerializer)
    def get_mailbox(self, connection: MarketplaceConnection) -> dict[str, Any]:
        return connection_mailbox_state(connection, fallback_source=self.context.get("fallback_source", ""))


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField(
        help_text="CONNECTED if one connection is, else the most telling status, or NOT_CONNECTED when there is none."
    )
    connected = serializers.BooleanField()
    appSource = serializers.CharField(help_text="The SP-API app in use (AMAZON_SPAPI_APP_SOURCE).")
    connections = ConnectionSerializer(many=True)


class DisconnectInputSerializer(InputSerializer):
    SELLER_KEYS = ("sellingPartnerId", "selling_partner_id")

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


# --- Relay mailbox settings ------------------------------------------------------------------

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_HOST_LABEL}\.)*{_HOST_LABEL}\.?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> None:
    if _CONTROL.search(value):
        raise serializers.ValidationError("must not contain control characters (line breaks, tabs, NUL…)")


def _host(value: str) -> str:
    host = value.strip().lower()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    try:  # an internationalised name is kept in its ASCII (IDNA) form, as resolvers want it
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise serializers.ValidationError("is not a host name or an IP address") from None
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise serializers.ValidationError("is not a host name or an IP address")
    return host


class _MailServerInputSerializer(InputSerializer):
    """What IMAP and SMTP settings share: a server, a login, a password kept in the secret store."""

    TLS_PORT, OTHER_PORT = 0, 0  # the default port with implicit TLS, and with STARTTLS or none

    host = serializers.CharField(max_length=253, validators=[_no_control])
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    username = serializers.CharField(max_length=255, validators=[_no_control])
    password = serializers.CharField(
        max_length=1024,
        required=False,
        trim_whitespace=False,
        write_only=True,
        validators=[_no_control],
        help_text="Stored in the secret store, never returned. Omit it to keep the stored one.",
    )

    def validate_host(self, value: str) -> str:
        return _host(value)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        data.setdefault("port", self.TLS_PORT if data["security"] == "tls" else self.OTHER_PORT)
        return data


class ImapInputSerializer(_MailServerInputSerializer):
    TLS_PORT, OTHER_PORT = 993, 143

    host = serializers.CharField(max_length=253, validators=[_no_control], help_text="e.g. imap.gmail.com")
    port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, help_text="Default: 993 with tls, 143 otherwise."
    )
    security = serializers.ChoiceField(
        choices=["tls", "starttls", "none"],
        default="tls",
        help_text="`none` only for a loopback host (the password would cross the network in clear).",
    )
    folder = serializers.CharField(
        max_length=255, default="INBOX", validators=[_no_control], help_text="Where Amazon's mails arrive."
    )


class SmtpInputSerializer(_MailServerInputSerializer):
    TLS_PORT, OTHER_PORT = 465, 587

    host = serializers.CharField(max_length=253, validators=[_no_control], help_text="e.g. smtp.gmail.com")
    port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, help_text="Default: 465 with tls, 587 otherwise."
    )
    security = serializers.ChoiceField(
        choices=["tls", "starttls", "none"],
        default="starttls",
        help_text="`tls` (implicit, port 465), `starttls` (port 587); `none` only for a loopback host.",
    )
    fromAddress = serializers.EmailField(
        max_length=254,
        help_text="The sender address approved in Seller Central (Settings → Messaging Permissions).",
    )


class MailboxInputSerializer(InputSerializer):
    imap = ImapInputSerializer()
    smtp = SmtpInputSerializer(
        required=False,
        allow_null=True,
        help_text="Where replies leave from. Omitted: unchanged; null: removed (replies then go nowhere).",
    )


class ImapOutputSerializer(serializers.Serializer):
    host = serializers.CharField(source="imap_host")
    port = serializers.IntegerField(source="imap_port")
    security = serializers.CharField(source="imap_security")
    username = serializers.CharField(source="imap_username")
    folder = serializers.CharField(source="imap_folder")
    passwordSet = serializers.SerializerMethodField()

    def get_passwordSet(self, mailbox: Any) -> bool:
        return bool(mailbox.imap_secret_ref)


class SmtpOutputSerializer(serializers.Serializer):
    host = serializers.CharField(source="smtp_host")
    port = serializers.IntegerField(source="smtp_port")
    security = serializers.CharField(source="smtp_security")
    username = serializers.CharField(source="smtp_username")
    fromAddress = serializers.CharField(source="smtp_from_address")
    passwordSet = serializers.SerializerMethodField()

    def get_passwordSet(self, mailbox: Any) -> bool:
        return bool(mailbox.smtp_secret_ref)


class CheckResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    code = serializers.CharField(
        required=False,
        help_text="When not ok: mailbox_auth_failed, mailbox_unreachable, mailbox_tls_error, mailbox_folder_missing, "
        "mailbox_protocol_error, mailbox_host_not_allowed, mailbox_password_missing; for SMTP smtp_auth_failed, "
        "smtp_unreachable, smtp_tls_error, smtp_rejected, smtp_temporary…",
    )
    message = serializers.CharField(required=False)


class MailboxCheckSerializer(serializers.Serializer):
    imap = CheckResultSerializer()
    smtp = CheckResultSerializer(required=False, help_text="Only when SMTP settings are set.")


class MailboxSerializer(serializers.Serializer):
    connectionId = serializers.UUIDField()
    imap = ImapOutputSerializer()
    smtp = SmtpOutputSerializer(allow_null=True, help_text="null: no SMTP settings, replies are not sent from here.")
    check = MailboxCheckSerializer(
        help_text="PUT: the login and folder check just made. GET: the latest known state (the last poll's)."
    )
    updatedAt = serializers.DateTimeField()
