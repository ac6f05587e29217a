"""A stand-in for SP-API when `AMAZON_USE_MOCK` is on and no `AMAZON_SPAPI_ENDPOINT` is set (the demo
of `scripts/run.sh`): every order exists, shipped, with one item and one package; every messaging
action is allowed and accepted. Deterministic: the same order id always gives the same order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from marketplaces.amazon.spapi import (
    MESSAGING_ACTIONS,
    MESSAGING_ATTACHMENT_ACTIONS,
    MESSAGING_TEXT_LIMITS,
    MessageAttachment,
    MessagingAction,
    Order,
    OrderItem,
    OrderPackage,
    SpApiInvalidInput,
)

_TITLES = ("Bamboo Wireless Keyboard - Walnut", "USB-C Charging Cable 2 m", "Ceramic Pour-Over Coffee Set")


class MockSpApiClient:
    def get_order(self, order_id: str) -> Order:
        n = int(hashlib.sha256(order_id.encode()).hexdigest()[:8], 16)
        return Order(
            order_id=order_id,
            status="SHIPPED",
            purchase_date="2026-11-28T09:12:00Z",
            latest_ship_date="2026-11-30T23:59:59Z",
            latest_delivery_date="2026-12-04T23:59:59Z",
            marketplace_id="A13V1IB3VIYZZH",
            fulfillment_channel="MERCHANT",
            items=(
                OrderItem(
                    asin=f"B0{n % 10**8:08d}",
                    sku=f"SKU-{n % 10000:04d}",
                    title=_TITLES[n % len(_TITLES)],
                    quantity=1 + n % 2,
                    price=f"{19 + n % 40}.99",
                    currency="EUR",
                ),
            ),
            packages=(OrderPackage(carrier="DHL", tracking_number=f"00340434{n % 10**12:012d}", status="IN_TRANSIT"),),
        )

    def messaging_actions(self, order_id: str, marketplace_id: str) -> list[MessagingAction]:
        return [MessagingAction(name=name) for name in MESSAGING_ACTIONS]

    def send_message(
        self,
        action: str,
        order_id: str,
        marketplace_id: str,
        text: str,
        *,
        attachments: Sequence[MessageAttachment] = (),
    ) -> None:
        low, high = MESSAGING_TEXT_LIMITS[action]
        if not low <= len(text) <= high:
            raise SpApiInvalidInput(f"{action}: text must be {low} to {high} characters")
        if attachments and action not in MESSAGING_ATTACHMENT_ACTIONS:
            raise SpApiInvalidInput(f"{action} takes no attachments")
