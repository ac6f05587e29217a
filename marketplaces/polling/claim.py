"""Claiming due connections: which connections a worker polls, under a lease.

A claimed connection is leased to the worker for `AMAZON_POLL_LEASE_SECONDS` (the shared
`keybuzz.workers.leases`): a killed worker's connections are polled again once it runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from keybuzz.workers.leases import Lease
from marketplaces.models import Mailbox, MarketplaceConnection
from marketplaces.selectors import pollable_connections
from marketplaces.sources.base import ConnectionSnapshot, MailboxSnapshot

CONNECTION_LEASE = Lease(owner_field="lease_owner", expires_field="lease_expires_at")
# The oldest due first; a connection never polled before any other.
CLAIM_ORDER = (F("next_poll_at").asc(nulls_first=True), "id")


@dataclass(frozen=True)
class ClaimedConnection:
    snapshot: ConnectionSnapshot
    secret_ref: str


def connections_claim(
    *,
    worker: str,
    limit: int,
    tenant_id: str | None = None,
    connection_id: str | None = None,
    force: bool = False,
    untouched_since: datetime | None = None,
    mailboxes_only: bool = False,
) -> list[ClaimedConnection]:
    """Lease up to `limit` due connections to `worker` and return them.

    `untouched_since` (a run's start) skips the connections written since: every poll, failed or
    not, writes `updated_at`, so a run never takes a connection twice, even with `force` or a
    polling interval shorter than the run, and without keeping the ids it has polled (their list
    would grow with the run, in memory and in every claim's query).

    `mailboxes_only`: only the connections with a relay mailbox (no source reads the others)."""
    now = timezone.now()
    queryset = pollable_connections().filter(CONNECTION_LEASE.free(now))
    if not force:
        queryset = queryset.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
    if tenant_id:
        queryset = queryset.filter(tenant_id=tenant_id)
    if connection_id:
        queryset = queryset.filter(id=connection_id)
    if untouched_since:
        queryset = queryset.filter(updated_at__lt=untouched_since)
    if mailboxes_only:
        queryset = queryset.filter(mailbox__isnull=False)

    rows = CONNECTION_LEASE.claim(
        queryset,
        worker=worker,
        until=now + timedelta(seconds=settings.AMAZON_POLL_LEASE_SECONDS),
        limit=limit,
        order_by=CLAIM_ORDER,
        related=["mailbox"],
    )
    return [
        ClaimedConnection(
            snapshot=ConnectionSnapshot(
                id=str(c.id),
                tenant_id=str(c.tenant_id),
                selling_partner_id=c.selling_partner_id,
                region=c.region,
                marketplace_ids=tuple(c.marketplace_ids or ()),
                cursor=c.poll_cursor,
                mailbox=_mailbox_snapshot(c),
            ),
            secret_ref=c.secret_ref,
        )
        for c in rows
    ]


def _mailbox_snapshot(connection: MarketplaceConnection) -> MailboxSnapshot | None:
    try:
        mailbox = connection.mailbox
    except Mailbox.DoesNotExist:
        return None
    return MailboxSnapshot(
        host=mailbox.imap_host,
        port=mailbox.imap_port,
        security=mailbox.imap_security,
        username=mailbox.imap_username,
        folder=mailbox.imap_folder,
        secret_ref=mailbox.imap_secret_ref,
        has_error=bool(mailbox.last_error),
    )


def leases_release(*, worker: str, connection_ids: list[str]) -> None:
    """Gives back connections claimed but not polled (the worker is stopping)."""
    CONNECTION_LEASE.release(MarketplaceConnection.objects.filter(id__in=connection_ids), worker=worker)
