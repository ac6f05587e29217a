"""marketplaces.polling.claim: which connections a worker polls, under a lease."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.polling.claim import connections_claim, leases_release
from tests.factories import make_connection, make_tenant

pytestmark = pytest.mark.django_db


def sellers(claimed) -> list[str]:
    return [c.snapshot.selling_partner_id for c in claimed]


def test_only_due_connected_connections_of_the_current_app_oldest_first(settings):
    settings.AMAZON_SPAPI_APP_SOURCE = "keybuzz"
    now = timezone.now()
    tenant = make_tenant()
    make_connection(tenant, seller="LATER", app_source="keybuzz", next_poll_at=now + timedelta(minutes=5))
    make_connection(tenant, seller="OLD", app_source="keybuzz", next_poll_at=now - timedelta(minutes=9))
    make_connection(tenant, seller="NEW", app_source="keybuzz", next_poll_at=None)
    make_connection(tenant, seller="RECENT", app_source="keybuzz", next_poll_at=now - timedelta(minutes=1))
    make_connection(tenant, seller="OTHERAPP", app_source="external_test")
    make_connection(tenant, seller="GONE", app_source="keybuzz", status=ConnectionStatus.DISCONNECTED)
    make_connection(tenant, seller="REAUTH", app_source="keybuzz", status=ConnectionStatus.NEEDS_REAUTH)

    assert sellers(connections_claim(worker="w", limit=10)) == ["NEW", "OLD", "RECENT"]


def test_force_ignores_the_interval_but_not_another_workers_lease():
    now = timezone.now()
    make_connection(seller="LATER", next_poll_at=now + timedelta(minutes=5))
    make_connection(seller="HELD", lease_owner="other", lease_expires_at=now + timedelta(minutes=5))
    assert sellers(connections_claim(worker="w", limit=10)) == []
    assert sellers(connections_claim(worker="w", limit=10, force=True)) == ["LATER"]


def test_the_snapshot_carries_what_a_source_needs():
    row = make_connection(seller="A1", region="FE", marketplace_ids=["A1VC38T7YXB528"], poll_cursor="uid=5")
    [claimed] = connections_claim(worker="w", limit=1)
    snap = claimed.snapshot
    assert (snap.id, snap.tenant_id, snap.region, snap.marketplace_ids, snap.cursor) == (
        str(row.id),
        str(row.tenant_id),
        "FE",
        ("A1VC38T7YXB528",),
        "uid=5",
    )
    assert claimed.secret_ref == row.secret_ref


def test_narrowing_by_tenant_connection_and_run_start():
    first = make_connection(seller="A")
    second = make_connection(seller="B")
    assert sellers(connections_claim(worker="w", limit=10, tenant_id=str(second.tenant_id))) == ["B"]
    assert sellers(connections_claim(worker="w2", limit=10, connection_id=str(first.id))) == ["A"]
    leases_release(worker="w", connection_ids=[str(second.id)])
    leases_release(worker="w2", connection_ids=[str(first.id)])
    # A run skips what was written after it started (its own polls included).
    started = timezone.now()
    MarketplaceConnection.objects.filter(pk=first.pk).update(updated_at=started + timedelta(seconds=1))
    assert sellers(connections_claim(worker="w3", limit=10, untouched_since=started)) == ["B"]


def test_released_connections_are_due_again_at_once():
    make_connection(seller="A")
    [claimed] = connections_claim(worker="w", limit=1)
    assert connections_claim(worker="w2", limit=1) == []
    leases_release(worker="w", connection_ids=[claimed.snapshot.id])
    assert sellers(connections_claim(worker="w2", limit=1)) == ["A"]
