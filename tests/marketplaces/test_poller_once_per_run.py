"""One run polls a connection at most once, even with --force (which ignores the polling interval)
and several worker threads: a connection one thread has polled and released must not be claimed
again by another thread of the same run. Found by the DEPLOY.md check (runbook "Test 2")."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.polling import poll_run
from tests.factories import make_tenant

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("connections", [1, 3])
def test_forced_threaded_runs_poll_each_connection_once(requires_postgres, settings, connections):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 4
    tenant = make_tenant()
    for n in range(connections):
        MarketplaceConnection.objects.create(
            tenant=tenant,
            selling_partner_id=f"A1ONCE{n}",
            status=ConnectionStatus.CONNECTED,
            app_source="external_test",
            region="EU",
            connected_at=timezone.now(),
        )
    counts = [poll_run(force=True, should_stop=_guard(limit=20 + 10 * connections)).connections for _ in range(25)]
    assert counts == [connections] * 25


def _guard(*, limit: int):
    """A run that polled a connection twice would never end: stop it, and let the count tell."""
    calls = itertools.count()
    return lambda: next(calls) > limit
