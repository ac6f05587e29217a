"""Amazon's Messaging API actions on a ticket's order: which ones Amazon allows now, and queueing
one (sent by `send_replies` through the Amazon adapter, like a reply).

An action is a structured message about an order (delivery details, an unexpected problem…) that
Amazon delivers to the buyer itself; unlike a reply by e-mail it needs no relay address, only the
order and its marketplace. The text follows the action's length limits (checked here, before
anything is queued) and the same content rules as replies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User

from keybuzz.errors import ApplicationError, BadGatewayError, ConflictError, NotFoundError
from keybuzz.models import Tenant
from marketplaces.amazon.regions import UnknownMarketplace, find_marketplace
from marketplaces.amazon.spapi import (
    MESSAGING_ACTIONS,
    MESSAGING_ATTACHMENT_ACTIONS,
    MESSAGING_TEXT_LIMITS,
    SpApiError,
    SpApiForbidden,
    SpApiNotFound,
    SpApiThrottled,
)
from marketplaces.amazon.tokens import AccessTokenProvider, TokenRefreshFailed
from marketplaces.models import ExternalMessage, MarketplaceConnection, MarketplaceType
from marketplaces.orders.sync import OrderClient, spapi_client_for, spapi_usage_add
from tickets.models import Channel, Direction, Ticket, TicketMessage
from tickets.services import MessageKind, ticket_message_create

logger = logging.getLogger("marketplaces.messaging")

AMAZON_MESSAGING = "amazon_messaging"  # the origin of the messages sent through the Messaging API
# The relay domain of a buyer's mail → the marketplace's country (regions.find_marketplace).
_DOMAIN_COUNTRY = {
    "amazon.com": "US", "amazon.ca": "CA", "amazon.com.mx": "MX", "amazon.com.br": "BR", "amazon.co.uk": "GB",
    "amazon.de": "DE", "amazon.fr": "FR", "amazon.it": "IT", "amazon.es": "ES", "amazon.nl": "NL", "amazon.se": "SE",
    "amazon.pl": "PL", "amazon.com.be": "BE", "amazon.ie": "IE", "amazon.com.tr": "TR", "amazon.ae": "AE",
    "amazon.sa": "SA", "amazon.eg": "EG", "amazon.co.jp": "JP", "amazon.com.au": "AU", "amazon.sg": "SG",
    "amazon.in": "IN", "amazon.co.za": "ZA",
}  # fmt: skip


class AmazonThrottledError(ApplicationError):
    status_code = 429
    code = "amazon_throttled"


@dataclass(frozen=True)
class ActionChoice:
    name: str
    allowed: bool  # Amazon offers it for this order now
    min_length: int
    max_length: int


@dataclass(frozen=True)
class OrderActions:
    order_id: str
    marketplace_id: str
    actions: list[ActionChoice]


@dataclass(frozen=True)
class ActionTarget:
    """What an action needs to be sent: the order, its marketplace, the connection that sends it."""

    connection: MarketplaceConnection
    order_id: str
    marketplace_id: str


def _ticket(*, tenant: Tenant, ticket_id: int) -> Ticket:
    ticket = Ticket.objects.filter(tenant=tenant, pk=ticket_id).first()
    if ticket is None:  # another tenant's id answers like one that does not exist
        raise NotFoundError("No such ticket.")
    return ticket


def ticket_marketplace_id(ticket: Ticket, connection: MarketplaceConnection) -> str:
    """The order's marketplace: from its fetched context, else the buyer's relay domain, else the
    connection's (only) marketplace. "" when none says."""
    context = ticket.order_context if isinstance(ticket.order_context, dict) else {}
    if context.get("marketplaceId"):
        return str(context["marketplaceId"])
    external_ids = (
        TicketMessage.objects.filter(ticket=ticket, direction=Direction.INBOUND, external_message_id__isnull=False)
        .order_by("-sent_at")
        .values_list("external_message_id", flat=True)[:5]
    )
    for raw in ExternalMessage.objects.filter(id__in=list(external_ids)).values_list("raw", flat=True):
        domain = raw.get("marketplace") if isinstance(raw, dict) else None
        if isinstance(domain, str) and domain in _DOMAIN_COUNTRY:
            try:
                return find_marketplace(_DOMAIN_COUNTRY[domain]).marketplace_id
            except UnknownMarketplace:
                continue
    ids = list(connection.marketplace_ids or [])
    return str(ids[0]) if len(ids) == 1 else ""


def action_target(ticket: Ticket) -> ActionTarget:
    """Raises ConflictError when the ticket cannot take an Amazon action (no order, no connection…)."""
    if ticket.channel != Channel.AMAZON or ticket.connection_id is None:
        raise ConflictError("This ticket did not come from an Amazon connection.", code="not_an_amazon_ticket")
    if not ticket.order_id:
        raise ConflictError("This ticket names no order: Amazon's messaging actions are about an order.",
                            code="ticket_without_order")  # fmt: skip
    connection = MarketplaceConnection.objects.filter(
        pk=ticket.connection_id, tenant_id=ticket.tenant_id, type=MarketplaceType.AMAZON
    ).first()
    if connection is None:
        raise ConflictError("The Amazon connection of this ticket no longer exists.", code="connection_missing")
    marketplace_id = ticket_marketplace_id(ticket, connection)
    if not marketplace_id:
        raise ConflictError(
            "The order's marketplace is not known yet (its order context was not fetched): try again later.",
            code="marketplace_unknown",
        )
    return ActionTarget(connection=connection, order_id=ticket.order_id, marketplace_id=marketplace_id)


def _spapi_failure(exc: SpApiError | TokenRefreshFailed) -> ApplicationError:
    """An SP-API error as the API's: what the agent can do about it."""
    if isinstance(exc, SpApiThrottled):
        return AmazonThrottledError(f"Amazon is throttling this seller's requests: try again in a minute. ({exc})")
    if isinstance(exc, SpApiForbidden):
        return ConflictError(
            f"Amazon refused: the seller's app lacks the Messaging role, or the order is not theirs. ({exc})",
            code="amazon_forbidden",
        )
    if isinstance(exc, SpApiNotFound):
        return NotFoundError(f"Amazon does not know this order (yet). ({exc})", code="amazon_order_not_found")
    return BadGatewayError(f"Amazon could not be reached or answered an error: {exc}", code="amazon_unavailable")


def amazon_actions_list(*, tenant: Tenant, ticket_id: int, client: OrderClient | None = None) -> OrderActions:
    """The actions KeyBuzz offers, each marked allowed or not by Amazon's getMessagingActionsForOrder."""
    target = action_target(_ticket(tenant=tenant, ticket_id=ticket_id))
    client = client or spapi_client_for(target.connection, AccessTokenProvider())
    try:
        offered = {action.name for action in client.messaging_actions(target.order_id, target.marketplace_id)}
    except (SpApiError, TokenRefreshFailed) as exc:
        spapi_usage_add(
            throttled=int(isinstance(exc, SpApiThrottled)), failures=int(not isinstance(exc, SpApiThrottled))
        )
        raise _spapi_failure(exc) from None
    spapi_usage_add()
    return OrderActions(
        order_id=target.order_id,
        marketplace_id=target.marketplace_id,
        actions=[
            ActionChoice(
                name=name,
                allowed=name in offered,
                min_length=MESSAGING_TEXT_LIMITS[name][0],
                max_length=MESSAGING_TEXT_LIMITS[name][1],
            )
            for name in MESSAGING_ACTIONS
        ],
    )


def amazon_action_queue(
    *,
    tenant: Tenant,
    ticket_id: int,
    author: User,
    action: str,
    text: str,
    attachment_ids: Sequence[int] = (),
    acknowledge_violations: bool = False,
) -> TicketMessage:
    """Queues `action` with `text` (and the ticket's uploads named, for the actions that take files)
    on the ticket, delivered by send_replies through SP-API."""
    if action not in MESSAGING_ACTIONS:
        raise NotFoundError(
            f"Unknown Amazon messaging action {action!r}; one of: {', '.join(MESSAGING_ACTIONS)}.",
            code="unknown_action",
        )
    ticket = _ticket(tenant=tenant, ticket_id=ticket_id)
    action_target(ticket)  # refuses tickets that cannot take one, before anything is queued
    if attachment_ids and action not in MESSAGING_ATTACHMENT_ACTIONS:
        raise ApplicationError(
            f"Amazon takes no files with {action}; only with: {', '.join(sorted(MESSAGING_ATTACHMENT_ACTIONS))}.",
            code="attachments_not_allowed",
        )
    low, high = MESSAGING_TEXT_LIMITS[action]
    length = len(text.strip())
    if not low <= length <= high:
        raise ApplicationError(
            f"Amazon takes {low} to {high} characters of text for {action}; this text has {length}.",
            code="text_length",
            details={"min": low, "max": high, "length": length},
        )
    message = ticket_message_create(
        tenant=tenant,
        ticket_id=ticket.pk,
        author=author,
        body=text,
        kind=MessageKind.REPLY,
        attachment_ids=attachment_ids,
        acknowledge_violations=acknowledge_violations,
        origin=AMAZON_MESSAGING,
        channel_action=action,
    )
    logger.info("Amazon action %s queued on ticket %s for tenant %s", action, ticket.pk, tenant.pk)
    return message
