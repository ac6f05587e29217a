"""The secret store sealed during a poll and during the OAuth callback: a clean error, nothing half
written, and the next run (or attempt) completes."""

from __future__ import annotations

import pytest
import responses
from rest_framework.test import APIClient

from marketplaces.amazon.refresh_tokens import refresh_token_path, refresh_token_store
from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection, OAuthState
from marketplaces.polling import poll_run
from tests.factories import make_connection, make_tenant
from tests.marketplaces.conftest import AMAZON_OAUTH, REFRESH_TOKEN, callback, lwa_ok, start_flow
from tests.marketplaces.scripted_sources import TokenScriptedSource, raw_message
from tickets.models import Ticket, TicketMessage

pytestmark = [pytest.mark.postgres, *AMAZON_OAUTH]
LWA_URL = "https://api.amazon.com/auth/o2/token"


class SealingSource(TokenScriptedSource):
    """Amazon answers the first connection; meanwhile Vault is sealed (an operator, a restart)."""

    server = None

    def fetch(self, connection, *, access_token):
        result = super().fetch(connection, access_token=access_token)
        if type(self).server is not None:
            type(self).server.seal()
            type(self).server = None
        return result


@pytest.fixture
def three_sellers(own_openbao, settings, requires_postgres):
    settings.AMAZON_MESSAGE_SOURCE = "tests.faults.test_secret_store.SealingSource"
    settings.AMAZON_POLL_WORKERS = 1
    tenant = make_tenant()
    connections = []
    for n in range(3):
        seller = f"S{n}"
        path = refresh_token_path(tenant_id=tenant.id, selling_partner_id=seller)
        refresh_token_store(
            path=path,
            refresh_token=f"Atzr|token-{n}",
            selling_partner_id=seller,
            app_source="external_test",
            region="EU",
        )
        connections.append(make_connection(tenant, seller=seller, secret_ref=path))
    SealingSource.script = {f"S{n}": [raw_message(10 * n + i) for i in range(2)] for n in range(3)}
    SealingSource.calls = []
    return connections


def amazon(vault) -> responses.RequestsMock:
    """Login with Amazon, faked; Vault stays real."""
    mock = responses.RequestsMock()
    mock.add_passthru(vault.addr)
    return mock


def filed() -> tuple[int, int, int]:
    return ExternalMessage.objects.count(), Ticket.objects.count(), TicketMessage.objects.count()


def test_sealed_mid_poll_fails_the_rest_cleanly_and_the_next_run_completes(three_sellers, own_openbao):
    SealingSource.server = own_openbao
    with amazon(own_openbao) as lwa:
        lwa.post(LWA_URL, json={"access_token": "Atza|x", "token_type": "bearer", "expires_in": 3600})
        summary = poll_run(force=True)

    assert (summary.connections, summary.failures) == (3, 2)
    assert filed() == (2, 2, 2)  # the first seller's two messages, nothing of the others
    failed = MarketplaceConnection.objects.exclude(last_error="")
    assert failed.count() == 2
    for row in failed:
        assert row.status == ConnectionStatus.CONNECTED and row.poll_cursor == ""
        assert "Token refresh failed: Secret store at" in row.last_error and "sealed" in row.last_error

    own_openbao.unseal()
    with amazon(own_openbao) as lwa:
        lwa.post(LWA_URL, json={"access_token": "Atza|x", "token_type": "bearer", "expires_in": 3600})
        again = poll_run(force=True)
    assert (again.failures, again.new_messages) == (0, 4)
    assert filed() == (6, 6, 6)
    assert not MarketplaceConnection.objects.exclude(last_error="").exists()


def test_sealed_before_the_run_no_connection_is_half_polled(three_sellers, own_openbao):
    own_openbao.seal()
    summary = poll_run(force=True)  # no LWA call can happen: the refresh tokens cannot be read
    assert (summary.connections, summary.failures, summary.fetched) == (3, 3, 0)
    assert filed() == (0, 0, 0)
    own_openbao.unseal()
    with amazon(own_openbao) as lwa:
        lwa.post(LWA_URL, json={"access_token": "Atza|x", "token_type": "bearer", "expires_in": 3600})
        assert poll_run(force=True).new_messages == 6


def test_sealed_during_the_callback_is_a_503_and_connecting_again_works(
    own_openbao, owner_client, fake_lwa, requires_postgres
):
    fake_lwa.add_passthru(own_openbao.addr)
    lwa_ok(fake_lwa)
    state = start_flow(owner_client)
    own_openbao.seal()
    answer = callback(APIClient(), state=state, HTTP_ACCEPT="application/json")
    assert answer.status_code == 503
    assert answer.json()["code"] == "secret_store_unavailable"
    connection = MarketplaceConnection.objects.get()
    assert connection.status == ConnectionStatus.ERROR and connection.secret_ref == ""
    assert "Secret store write failed" in connection.last_error
    assert REFRESH_TOKEN not in str(list(MarketplaceConnection.objects.values()))

    own_openbao.unseal()
    assert OAuthState.objects.get().used_at is not None  # that attempt is over: start again
    retry = callback(APIClient(), state=start_flow(owner_client), HTTP_ACCEPT="application/json")
    assert retry.status_code == 200
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.CONNECTED
    assert (
        own_openbao.client().secrets.kv.v2.read_secret_version(
            path=connection.secret_ref, mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]["refresh_token"]
        == REFRESH_TOKEN
    )
