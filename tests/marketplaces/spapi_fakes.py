"""SP-API answers in the wire format of Amazon's models (Orders v2026-01-01 getOrder, Messaging v1),
for `responses`; and a connection whose LWA refresh token is in the secret store, so the real token
provider and client run end to end (only HTTP is faked)."""

from __future__ import annotations

import re
from typing import Any

import responses

from marketplaces.amazon.refresh_tokens import refresh_token_store
from marketplaces.models import MarketplaceConnection
from tests.factories import make_connection
from tests.marketplaces.conftest import ACCESS_TOKEN, LWA_URL, REFRESH_TOKEN

EU = "https://sellingpartnerapi-eu.amazon.com"
NA = "https://sellingpartnerapi-na.amazon.com"


def spapi_connection(tenant: Any = None, *, region: str = "EU", **fields: Any) -> MarketplaceConnection:
    connection = make_connection(tenant, region=region, **fields)
    refresh_token_store(
        path=connection.secret_ref,
        refresh_token=REFRESH_TOKEN,
        selling_partner_id=connection.selling_partner_id,
        app_source=connection.app_source,
        region=region,
    )
    return connection


def lwa_tokens(rsps: responses.RequestsMock) -> None:
    rsps.post(
        LWA_URL,
        json={"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN, "token_type": "bearer", "expires_in": 3600},
    )


def order_body(
    order_id: str,
    *,
    status: str = "SHIPPED",
    fulfilled_by: str = "MERCHANT",
    marketplace_id: str = "A1PA6795UKMFR9",
    title: str = "Bamboo Wireless Keyboard - Walnut, DE Layout",
) -> dict[str, Any]:
    """getOrder's 200 body with includedData=FULFILLMENT,PACKAGES (no `payload` wrapper in this version)."""
    return {
        "order": {
            "orderId": order_id,
            "createdTime": "2026-11-28T09:12:44Z",
            "lastUpdatedTime": "2026-11-30T16:02:10Z",
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": marketplace_id, "marketplaceName": "Amazon.de"},
            "fulfillment": {
                "fulfillmentStatus": status,
                "fulfilledBy": fulfilled_by,
                "fulfillmentServiceLevel": "STANDARD",
                "shipByWindow": {"latestDateTime": "2026-11-30T23:59:59Z"},
                "deliverByWindow": {
                    "earliestDateTime": "2026-12-02T00:00:00Z",
                    "latestDateTime": "2026-12-04T23:59:59Z",
                },
            },
            "orderItems": [
                {
                    "orderItemId": "53102964214571",
                    "quantityOrdered": 2,
                    "product": {
                        "asin": "B0C7K2M9QX",
                        "title": title,
                        "sellerSku": "KB-WAL-DE",
                        "price": {"unitPrice": {"amount": "49.99", "currencyCode": "EUR"}},
                    },
                }
            ],
            "packages": [
                {
                    "packageReferenceId": "1",
                    "createdTime": "2026-11-30T15:58:00Z",
                    "carrier": "DHL",
                    "trackingNumber": "00340434161234567890",
                    "packageStatus": {"status": "IN_TRANSIT", "detailedStatus": "IN_TRANSIT"},
                }
            ],
        }
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "details": ""}]}


def order_url(host: str, order_id: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"{host}/orders/2026-01-01/orders/{order_id}") + r"(\?.*)?$")


def actions_body(order_id: str, names: list[str]) -> dict[str, Any]:
    """getMessagingActionsForOrder's HAL answer."""
    base = f"/messaging/v1/orders/{order_id}"
    return {
        "_links": {
            "self": {"href": f"{base}?marketplaceIds=A1PA6795UKMFR9"},
            "actions": [
                {"href": f"{base}/messages/{name}?marketplaceIds=A1PA6795UKMFR9", "name": name} for name in names
            ],
        },
        "_embedded": {"actions": []},
    }
