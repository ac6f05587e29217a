"""Two (or more) callbacks racing with one state: exactly one wins. Needs PostgreSQL, where the
conditional UPDATE really runs concurrently (SQLite serializes every writer)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from marketplaces.errors import InvalidState
from marketplaces.models import ConnectionStatus, MarketplaceConnection, OAuthState
from marketplaces.services.oauth import oauth_state_consume
from tests.marketplaces.conftest import AMAZON_OAUTH, BROWSER_KEYS, callback, lwa_ok, start_flow
from tests.threads import race

pytestmark = [pytest.mark.django_db(transaction=True), *AMAZON_OAUTH]


def test_concurrent_consumers_of_one_state(requires_postgres, owner_client):
    state = start_flow(owner_client)
    for _ in range(5):  # repeat: a race that is lost only sometimes must still be caught
        OAuthState.objects.update(used_at=None)
        results = race(8, lambda _: oauth_state_consume(state=state, browser_key=BROWSER_KEYS[state]))
        winners = [r for r in results if isinstance(r, OAuthState)]
        losers = [r for r in results if isinstance(r, InvalidState)]
        assert len(winners) == 1, results
        assert len(losers) == 7 and all("already used" in r.message for r in losers)


def test_two_concurrent_callbacks_connect_once(requires_postgres, owner, owner_client, fake_lwa):
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    results = race(2, lambda _: callback(APIClient(), state=state, HTTP_ACCEPT="application/json"))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400], results
    loser = next(r for r in results if r.status_code == 400)
    assert loser.json()["code"] == "invalid_state"
    assert len(fake_lwa.calls) == 1  # only the winner reached Amazon
    connection = MarketplaceConnection.objects.get()
    assert connection.status == ConnectionStatus.CONNECTED and connection.tenant_id == owner.tenant_id
