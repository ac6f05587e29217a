"""Claiming due connections: which connections a worker polls, under a lease.

A claimed connection is leased to the worker for `AMAZON_POLL_LEASE_SECONDS` (the shared
`keybuzz.workers.leases`): a killed worker's connections are polled again once it runs out.

A claim must cost about the same at the end of a run as at its start, whatever the number of
connections, or a run costs the square of them. Hence the two tiers below, each read in index order
and only as far as the claim needs, and `ClaimProgress`: a poll moves its connection to another
place of the index (its `next_poll_at` changes), and the entry it leaves stays in the index until
VACUUM; while any transaction older than the run is open in the database (a backup, a report),
PostgreSQL can neither remove nor skip those entries, and a claim starting at the beginning of the
range would read the entry of every connection polled so far (measured: 2 to 5 ms a claim at
10,000 connections, growing through the run). The run's claims start where its previous ones
stopped instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from keybuzz.workers.leases import Lease
from marketplaces.models import Mailbox, MarketplaceConnection
from marketplaces.selectors import pollable_connections
from marketplaces.sources.base import ConnectionSnapshot, MailboxSnapshot

CONNECTION_LEASE = Lease(owner_field="lease_owner", expires_field="lease_expires_at")
# A connection never polled before any other, then the oldest due first: two tiers, each one range
# of the `connection_due` index (status, next_poll_at) read in its order, so a claim reads about as
# many index entries as it takes rows. One ORDER BY "next_poll_at NULLS FIRST, id" has no index to
# follow: every claim sorted all the due connections (17 ms at 10,000 of them), a run's claims cost
# the square of its connections. Ties (never-polled connections) are taken in index order.
CLAIM_ORDER = (F("next_poll_at").asc(),)
NEVER_POLLED = Q(next_poll_at__isnull=True)


@dataclass(frozen=True)
class ClaimedConnection:
    snapshot: ConnectionSnapshot
    secret_ref: str


@dataclass
class ClaimProgress:
    """How far one run's claims went: past the never-polled connections once a claim found fewer of
    them than it wanted (the others are leased, to this run or another worker; a connection added
    since waits for the next run), and past the due connections up to the latest `next_poll_at`
    claimed (an earlier one not claimed was leased to another worker, or locked by another claim
    then, and waits for the next run). Shared by the run's threads."""

    never_polled_left: bool = True
    due_from: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tiers(self, polled_before: Q) -> list[Q]:
        """The tiers of the run's next claim (see `connections_claim`)."""
        with self.lock:
            due = polled_before & Q(next_poll_at__gte=self.due_from) if self.due_from else polled_before
            return [NEVER_POLLED, due] if self.never_polled_left else [due]

    def advance(self, claimed: Sequence[MarketplaceConnection], *, wanted: int, tiers: Sequence[Q]) -> None:
        """After a claim of `wanted` connections through `tiers`, which gave `claimed`."""
        never_polled = sum(1 for c in claimed if c.next_poll_at is None)
        due = [c.next_poll_at for c in claimed if c.next_poll_at is not None]
        with self.lock:
            if tiers[0] is NEVER_POLLED and never_polled < wanted:
                self.never_polled_left = False
            if due:
                self.due_from = max(self.due_from or due[0], *due)


def connections_claim(
    *,
    worker: str,
    limit: int,
    tenant_id: str | None = None,
    connection_id: str | None = None,
    force: bool = False,
    untouched_since: datetime | None = None,
    mailboxes_only: bool = False,
    progress: ClaimProgress | None = None,
) -> list[ClaimedConnection]:
    """Lease up to `limit` due connections to `worker` and return them.

    `untouched_since` (a run's start) skips the connections written since: every poll, failed or
    not, writes `updated_at`, so a run never takes a connection twice, even with `force` or a
    polling interval shorter than the run, and without keeping the ids it has polled (their list
    would grow with the run, in memory and in every claim's query).

    `mailboxes_only`: only the connections with a relay mailbox (no source reads the others).
    `progress`: the run's, to start where its previous claims stopped (see the module)."""
    now = timezone.now()
    queryset = pollable_connections().filter(CONNECTION_LEASE.free(now))
    # Without `force` the second tier is the due connections only: the index range stops at now.
    polled_before = Q(next_poll_at__isnull=False) if force else Q(next_poll_at__lte=now)
    if tenant_id:
        queryset = queryset.filter(tenant_id=tenant_id)
    if connection_id:
        queryset = queryset.filter(id=connection_id)
    if untouched_since:
        queryset = queryset.filter(updated_at__lt=untouched_since)
    if mailboxes_only:
        queryset = queryset.filter(mailbox__isnull=False)

    tiers = progress.tiers(polled_before) if progress else [NEVER_POLLED, polled_before]
    rows = CONNECTION_LEASE.claim(
        queryset,
        worker=worker,
        until=now + timedelta(seconds=settings.AMAZON_POLL_LEASE_SECONDS),
        limit=limit,
        order_by=CLAIM_ORDER,
        related=["mailbox"],
        tiers=tiers,
    )
    if progress:
        progress.advance(rows, wanted=limit, tiers=tiers)
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
