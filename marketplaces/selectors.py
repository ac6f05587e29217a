"""Read-only queries on marketplace connections; tenant-scoped ones take the tenant explicitly.

A connection's *effective* status is its stored status, except that a CONNECTED connection made
with another SP-API app than the current `AMAZON_SPAPI_APP_SOURCE` reads NEEDS_REAUTH: after the
switch its refresh token belongs to the other app and no longer works (runbook "Basculer vers
Credentials KeyBuzz"). It is computed, not stored, so switching back revives those connections
and no migration step is needed at switch time; the poller uses `pollable_connections()`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    F,
    Q,
    QuerySet,
    Value,
    When,
)

from keybuzz.models import Tenant
from marketplaces.models import ConnectionStatus, Mailbox, MarketplaceConnection, MarketplaceType


def current_app_source() -> str:
    return settings.AMAZON_SPAPI_APP_SOURCE


def effective_status_expression() -> Case:
    return Case(
        When(
            Q(status=ConnectionStatus.CONNECTED) & ~Q(app_source=current_app_source()),
            then=Value(ConnectionStatus.NEEDS_REAUTH),
        ),
        default=F("status"),
        output_field=CharField(),
    )


def connection_effective_status(connection: MarketplaceConnection) -> str:
    if connection.status == ConnectionStatus.CONNECTED and connection.app_source != current_app_source():
        return ConnectionStatus.NEEDS_REAUTH
    return connection.status


def with_effective_status(queryset: QuerySet[MarketplaceConnection]) -> QuerySet[MarketplaceConnection]:
    return queryset.annotate(effective_status=effective_status_expression())


def pollable_connections() -> QuerySet[MarketplaceConnection]:
    """Amazon connections the poller may use: CONNECTED with the current app's tokens."""
    return MarketplaceConnection.objects.filter(
        type=MarketplaceType.AMAZON, status=ConnectionStatus.CONNECTED, app_source=current_app_source()
    )


def amazon_connection_list(*, tenant: Tenant) -> QuerySet[MarketplaceConnection]:
    """The tenant's Amazon connections with effective status and message/ticket counts (kept on the
    connection by the poller): one query."""
    return (
        with_effective_status(MarketplaceConnection.objects.filter(tenant=tenant, type=MarketplaceType.AMAZON))
        .select_related("mailbox")
        .order_by("-connected_at", "-created_at")
    )


def connection_mailbox_state(connection: MarketplaceConnection, *, fallback_source: str = "") -> dict[str, Any]:
    """What the status shows of a connection's relay mailbox (`fallback_source`: what reads the
    connections without one, "" when nothing does)."""
    try:
        mailbox = connection.mailbox
    except Mailbox.DoesNotExist:
        message = "no mailbox configured"
        if fallback_source:
            message += f" (messages come from the {fallback_source} source)"
        return {
            "configured": False,
            "message": message,
            "lastError": "",
            "lastErrorAt": None,
            "smtpConfigured": False,
            "smtpLastError": "",
            "smtpLastErrorAt": None,
        }
    where = f"{mailbox.imap_username} on {mailbox.imap_host}, folder {mailbox.imap_folder}"
    return {
        "configured": True,
        "message": f"{where}: {mailbox.last_error}" if mailbox.last_error else where,
        "lastError": mailbox.last_error,
        "lastErrorAt": mailbox.last_error_at,
        "smtpConfigured": mailbox.has_smtp,
        "smtpLastError": mailbox.smtp_last_error,
        "smtpLastErrorAt": mailbox.smtp_last_error_at,
    }
