"""marketplaces.polling.connection: one connection's poll, and its failures with a backoff."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplaces.amazon.tokens import AccessTokenProvider
from marketplaces.models import ConnectionStatus, MarketplaceConnection
from marketplaces.polling.claim import connections_claim
from marketplaces.polling.connection import connection_poll, failure_record
from marketplaces.sources import SourceError
from tests.factories import make_connection
from tests.marketplaces.scripted_sources import ScriptedSource, raw_message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def backoff(settings):
    settings.AMAZON_POLL_BACKOFF_BASE_SECONDS = 300
    settings.AMAZON_POLL_BACKOFF_MAX_SECONDS = 3600


def test_consecutive_failures_back_off_exponentially_up_to_the_cap():
    connection = make_connection(seller="A")
    waits = []
    for _ in range(6):
        before = timezone.now()
        failure_record(connection_id=str(connection.id), error="Fetch failed: HTTP 503")
        connection.refresh_from_db()
        waits.append(round((connection.next_poll_at - before).total_seconds(), -1))
    assert waits == [300, 600, 1200, 2400, 3600, 3600]
    assert (connection.consecutive_failures, connection.last_error, connection.status) == (
        6,
        "Fetch failed: HTTP 503",
        ConnectionStatus.CONNECTED,
    )


def test_needs_reauth_only_moves_a_connection_still_connected():
    connected = make_connection(seller="A")
    disconnected = make_connection(seller="B", status=ConnectionStatus.DISCONNECTED)
    for row in (connected, disconnected):
        failure_record(connection_id=str(row.id), error="Token refresh failed: invalid_grant", needs_reauth=True)
        row.refresh_from_db()
    assert (connected.status, disconnected.status) == (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.DISCONNECTED)


def test_a_source_failure_is_recorded_and_the_lease_given_back():
    make_connection(seller="A")
    ScriptedSource.script = {"A": SourceError("Amazon answered 503")}
    [claimed] = connections_claim(worker="w", limit=1)

    outcome = connection_poll(claimed=claimed, source=ScriptedSource(), tokens=AccessTokenProvider())

    assert outcome.error == "Fetch failed: Amazon answered 503"
    row = MarketplaceConnection.objects.get()
    assert (row.last_error, row.lease_owner, row.consecutive_failures) == (outcome.error, "", 1)
    assert row.next_poll_at > timezone.now() + timedelta(seconds=290)


def test_a_successful_poll_clears_the_last_error():
    make_connection(seller="A", last_error="Fetch failed: old", consecutive_failures=3)
    ScriptedSource.script = {"A": [raw_message(1)]}
    [claimed] = connections_claim(worker="w", limit=1, force=True)

    outcome = connection_poll(claimed=claimed, source=ScriptedSource(), tokens=AccessTokenProvider())

    assert (outcome.fetched, outcome.new_messages, outcome.new_tickets, outcome.error) == (1, 1, 1, "")
    row = MarketplaceConnection.objects.get()
    assert (row.last_error, row.consecutive_failures) == ("", 0)
