"""`sync_orders`' work: fetch with SP-API `getOrder` the orders open Amazon tickets talk about, and
put what Amazon says (status, dates, items, packages) on those tickets.

One run:
1. **discovers** the orders of open (OPEN or PENDING) Amazon tickets without context, or with context
   older than `AMAZON_ORDER_REFRESH_HOURS`: one `AmazonOrder` row per connection and order, however
   many tickets name it;
2. **claims** the due ones under a lease (`keybuzz.workers.leases`: several workers share the work),
   only for connections that can be polled and whose SP-API role is not missing;
3. **fetches** each one with no transaction open, and records the outcome:
   - found → its data on every ticket of that order (`tickets.ingest.ticket_order_context_set`),
     due again after `AMAZON_ORDER_REFRESH_HOURS` while one of them is open;
   - not found (buyers often write before the order reaches the API), throttled, Amazon down →
     retried after `AMAZON_ORDER_RETRY_BASE_SECONDS`, doubling up to `AMAZON_ORDER_RETRY_MAX_SECONDS`;
   - forbidden (the seller's app lacks the role) → recorded once on the connection, which gets no
     further calls until the seller reconnects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from keybuzz.db import insert_rows
from keybuzz.logging import log_context
from keybuzz.workers import worker_name
from keybuzz.workers.backoff import backoff_delay
from keybuzz.workers.leases import Lease
from keybuzz.workers.runner import StopCheck
from marketplaces.amazon.spapi import (
    MessageAttachment,
    MessagingAction,
    Order,
    SpApiClient,
    SpApiError,
    SpApiForbidden,
    SpApiNotFound,
    SpApiThrottled,
)
from marketplaces.amazon.spapi_mock import MockSpApiClient
from marketplaces.amazon.tokens import AccessTokenProvider, TokenRefreshFailed
from marketplaces.models import AmazonOrder, MarketplaceConnection, SpApiDailyUsage
from marketplaces.selectors import pollable_connections
from tickets.ingest import ticket_order_context_set
from tickets.models import Channel, Ticket, TicketStatus

logger = logging.getLogger("marketplaces.orders")

LOG = "[Order Sync]"
ORDER_LEASE = Lease(owner_field="fetch_worker", expires_field="next_fetch_at")
OPEN_STATUSES = (TicketStatus.OPEN, TicketStatus.PENDING)


@dataclass
class SyncSummary:
    discovered: int = 0  # orders seen for the first time
    claimed: int = 0
    fetched: int = 0
    not_found: int = 0  # Amazon does not know the order yet: retried later
    retrying: int = 0  # throttled, Amazon or the token unavailable: retried later
    forbidden: int = 0  # connections found without the role this run
    lost: int = 0  # another worker took the order over (lease expired) meanwhile
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.retrying == 0 and self.forbidden == 0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        return "sync_orders: " + " ".join(f"{key}={value}" for key, value in self.as_dict().items())


class _ConnectionTokens:
    """The connection's LWA access token, for the SP-API client (refreshed when Amazon says so)."""

    def __init__(self, provider: AccessTokenProvider, connection: MarketplaceConnection) -> None:
        self.provider = provider
        self.connection = connection

    def get(self) -> str:
        return self.provider.access_token(connection_id=str(self.connection.id), secret_ref=self.connection.secret_ref)

    def invalidate(self) -> None:
        self.provider.forget(connection_id=str(self.connection.id))


class OrderClient(Protocol):
    """What sync_orders and the messaging actions use of SP-API (the client, or the mock)."""

    def get_order(self, order_id: str) -> Order: ...

    def messaging_actions(self, order_id: str, marketplace_id: str) -> list[MessagingAction]: ...

    def send_message(
        self,
        action: str,
        order_id: str,
        marketplace_id: str,
        text: str,
        *,
        attachments: Sequence[MessageAttachment] = (),
    ) -> None: ...


ClientFactory = Callable[[MarketplaceConnection, AccessTokenProvider], OrderClient]


def spapi_client_for(connection: MarketplaceConnection, provider: AccessTokenProvider) -> OrderClient:
    """The connection's SP-API client; the in-process mock with AMAZON_USE_MOCK and no endpoint."""
    if settings.AMAZON_USE_MOCK and not settings.AMAZON_SPAPI_ENDPOINT:
        return MockSpApiClient()
    return SpApiClient(
        region=connection.region or "NA",
        tokens=_ConnectionTokens(provider, connection),
        seller_key=connection.selling_partner_id,
        endpoint=settings.AMAZON_SPAPI_ENDPOINT,
        timeout=settings.AMAZON_SPAPI_TIMEOUT,
    )


def _refresh_age() -> timedelta:
    return timedelta(hours=settings.AMAZON_ORDER_REFRESH_HOURS)


def orders_discover(*, now: datetime, limit: int) -> int:
    """Creates the rows of orders named by open Amazon tickets without (fresh) context. Returns how
    many are new; a known order keeps its own schedule."""
    pairs = (
        Ticket.objects.filter(channel=Channel.AMAZON, status__in=OPEN_STATUSES, connection_id__isnull=False)
        .exclude(order_id="")
        .filter(Q(order_context_at__isnull=True) | Q(order_context_at__lt=now - _refresh_age()))
        .values_list("tenant_id", "connection_id", "order_id")
        .distinct()
        .order_by()[: limit * 10]
    )
    rows = [{"tenant_id": t, "connection_id": c, "order_id": o} for t, c, o in pairs]
    return len(insert_rows(AmazonOrder, rows, conflict_fields=["connection", "order_id"], returning=["id"]))


def _due(now: datetime) -> Q:
    return Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now)


def orders_claim(*, worker: str, now: datetime, limit: int) -> list[AmazonOrder]:
    """Leases up to `limit` due orders that an open ticket still names, of connections that may call SP-API."""
    still_asked = Ticket.objects.filter(
        connection_id=OuterRef("connection_id"), order_id=OuterRef("order_id"), status__in=OPEN_STATUSES
    )
    candidates = AmazonOrder.objects.filter(
        _due(now),
        Exists(still_asked),
        connection__in=pollable_connections().filter(spapi_forbidden_at__isnull=True),
    )
    return ORDER_LEASE.claim(
        candidates,
        worker=worker,
        until=now + timedelta(seconds=settings.AMAZON_ORDER_LEASE_SECONDS),
        limit=limit,
        order_by=[F("next_fetch_at").asc(nulls_first=True), "id"],
        related=["connection"],
    )


class _Run:
    def __init__(self, *, worker: str, now: datetime, client_for: ClientFactory) -> None:
        self.worker = worker
        self.now = now
        self.client_for = client_for
        self.provider = AccessTokenProvider()
        self.clients: dict[str, OrderClient] = {}
        self.forbidden: set[str] = set()
        self.summary = SyncSummary()
        self.calls = self.throttled = self.failures = 0

    def fetch(self, order: AmazonOrder) -> None:
        connection = order.connection
        key = str(connection.id)
        with log_context(tenant_id=order.tenant_id, connection_id=connection.id):
            if key in self.forbidden:  # found without the role earlier in this run
                ORDER_LEASE.release(AmazonOrder.objects.filter(pk=order.pk), worker=self.worker)
                return
            client = self.clients.get(key) or self.client_for(connection, self.provider)
            self.clients[key] = client
            self.calls += 1
            try:
                found = client.get_order(order.order_id)
            except SpApiForbidden as exc:
                self.failures += 1
                self._forbidden(order, connection, str(exc))
            except SpApiNotFound as exc:
                self.summary.not_found += 1
                self._later(order, f"Amazon does not know this order yet: {exc}")
            except (SpApiError, TokenRefreshFailed) as exc:
                if isinstance(exc, SpApiThrottled):
                    self.throttled += 1
                else:
                    self.failures += 1
                self.summary.retrying += 1
                self._later(order, str(exc))
            else:
                self._found(order, found.as_dict())

    def _found(self, order: AmazonOrder, data: dict[str, object]) -> None:
        with transaction.atomic():
            updated = AmazonOrder.objects.filter(ORDER_LEASE.held_by(self.worker), pk=order.pk).update(
                data=data,
                fetched_at=self.now,
                failures=0,
                last_error="",
                fetch_worker="",
                next_fetch_at=self.now + _refresh_age(),
            )
            if not updated:
                self.summary.lost += 1
                return
            tickets = ticket_order_context_set(
                connection_id=order.connection_id, order_id=order.order_id, context=data, fetched_at=self.now
            )
        self.summary.fetched += 1
        logger.info("%s Order %s fetched (%s), on %d ticket(s)", LOG, order.order_id, data.get("status"), tickets)

    def _later(self, order: AmazonOrder, reason: str) -> None:
        failures = order.failures + 1
        delay = backoff_delay(
            failures,
            base_seconds=settings.AMAZON_ORDER_RETRY_BASE_SECONDS,
            max_seconds=settings.AMAZON_ORDER_RETRY_MAX_SECONDS,
        )
        if not AmazonOrder.objects.filter(ORDER_LEASE.held_by(self.worker), pk=order.pk).update(
            failures=failures, last_error=reason[:2000], fetch_worker="", next_fetch_at=self.now + delay
        ):
            self.summary.lost += 1
            return
        logger.warning(
            "%s Order %s not fetched (attempt %d), retry at %s: %s",
            LOG,
            order.order_id,
            failures,
            (self.now + delay).isoformat(timespec="seconds"),
            reason,
        )

    def _forbidden(self, order: AmazonOrder, connection: MarketplaceConnection, reason: str) -> None:
        self.forbidden.add(str(connection.id))
        text = f"SP-API refused the order data: {reason}. The seller must reconnect Amazon with the needed role."
        # Recorded once: the first run that meets it; later runs do not call for this connection.
        if MarketplaceConnection.objects.filter(pk=connection.pk, spapi_forbidden_at__isnull=True).update(
            spapi_forbidden_at=self.now, spapi_error=text[:2000]
        ):
            self.summary.forbidden += 1
            logger.error("%s Connection %s: %s", LOG, connection.id, text)
        ORDER_LEASE.release(AmazonOrder.objects.filter(pk=order.pk), worker=self.worker)


def spapi_usage_add(*, day: date | None = None, calls: int = 1, throttled: int = 0, failures: int = 0) -> None:
    """Counts SP-API calls for the operators' dashboard (a day's row, incremented in the database)."""
    day = day or timezone.localdate()
    if not (calls or throttled or failures):
        return
    SpApiDailyUsage.objects.bulk_create([SpApiDailyUsage(day=day)], ignore_conflicts=True)
    SpApiDailyUsage.objects.filter(day=day).update(
        calls=F("calls") + calls, throttled=F("throttled") + throttled, failures=F("failures") + failures
    )


def orders_sync_due(
    *,
    worker: str | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    should_stop: StopCheck = lambda: False,
    client_for: ClientFactory = spapi_client_for,
) -> SyncSummary:
    """One run: discover, claim, fetch, record."""
    started = time.monotonic()
    worker = worker or worker_name()
    now = now or timezone.now()
    limit = limit or settings.AMAZON_ORDER_BATCH
    run = _Run(worker=worker, now=now, client_for=client_for)
    run.summary.discovered = orders_discover(now=now, limit=limit)
    # A few orders leased at a time, not the whole run's: a worker started meanwhile (another host)
    # finds the orders this one has not reached, and each lease starts close to its fetch. A fetched
    # order is due again only later (next_fetch_at moves past `now`), so no claim takes it twice.
    batch = max(1, settings.AMAZON_ORDER_CLAIM_BATCH)
    stopped = False
    while not stopped and run.summary.claimed < limit:
        claimed = orders_claim(worker=worker, now=now, limit=min(batch, limit - run.summary.claimed))
        if not claimed:
            break
        run.summary.claimed += len(claimed)
        for index, order in enumerate(claimed):
            if should_stop():
                rest = claimed[index:]
                ORDER_LEASE.release(AmazonOrder.objects.filter(pk__in=[o.pk for o in rest]), worker=worker)
                run.summary.claimed -= len(rest)
                stopped = True
                break
            run.fetch(order)
    spapi_usage_add(day=timezone.localdate(now), calls=run.calls, throttled=run.throttled, failures=run.failures)
    summary = run.summary
    summary.seconds = round(time.monotonic() - started, 3)
    logger.info("%s Run completed: %s", LOG, summary.line().removeprefix("sync_orders: "))
    return summary
