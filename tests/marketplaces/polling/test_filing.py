"""marketplaces.polling.filing: messages, tickets, quarantine and the cursor in one transaction."""

from __future__ import annotations

import pytest

from marketplaces.models import ExternalMessage, MarketplaceConnection, QuarantinedMessage
from marketplaces.polling.claim import connections_claim
from marketplaces.polling.filing import messages_ingest
from marketplaces.sources import FetchResult
from marketplaces.sources.mock import MockAmazonSource
from tests.factories import make_connection
from tests.marketplaces.scripted_sources import raw_message
from tickets.models import Ticket, TicketMessage

pytestmark = pytest.mark.django_db


def ingest(raws, cursor="after"):
    [claimed] = connections_claim(worker="w", limit=1, force=True)
    return messages_ingest(
        claimed=claimed, fetch=FetchResult(raw_messages=raws, next_cursor=cursor), source=MockAmazonSource()
    )


def test_new_messages_become_tickets_and_the_cursor_moves_with_them():
    connection = make_connection(seller="A")
    result = ingest([raw_message(1, thread="order:1"), raw_message(2, thread="order:1"), raw_message(3)], "c1")

    assert (result.new_messages, result.new_tickets, result.quarantined) == (3, 2, 0)
    connection.refresh_from_db()
    assert (connection.poll_cursor, connection.lease_owner, connection.consecutive_failures) == ("c1", "", 0)
    for message in TicketMessage.objects.all():
        stored = ExternalMessage.objects.get(pk=message.external_message_id)
        assert stored.ticket == message.ticket and stored.body == message.body
    assert set(Ticket.objects.values_list("connection_id", flat=True)) == {connection.id}


def test_the_same_batch_again_files_nothing_new():
    make_connection(seller="A")
    ingest([raw_message(1), raw_message(2)])
    again = ingest([raw_message(1), raw_message(2)], "c2")
    assert (again.new_messages, again.new_tickets) == (0, 0)
    assert (ExternalMessage.objects.count(), TicketMessage.objects.count()) == (2, 2)
    assert MarketplaceConnection.objects.get().poll_cursor == "c2"


def test_a_message_the_database_refuses_is_quarantined_and_the_rest_filed():
    make_connection(seller="A")
    result = ingest([raw_message(1), raw_message(2, price=float("nan")), raw_message(3)])
    assert (result.new_messages, result.quarantined) == (2, 1)
    quarantined = QuarantinedMessage.objects.get()
    assert quarantined.external_id == "msg-2" and quarantined.reason.startswith("cannot be stored:")
    assert quarantined.raw["price"] is None


def test_unreadable_messages_are_quarantined_once_with_their_reason():
    make_connection(seller="A")
    ingest([raw_message(1), {"messageId": "bad-1", "body": "x"}])
    ingest([{"messageId": "bad-1", "body": "x"}])
    assert list(QuarantinedMessage.objects.values_list("external_id", "reason")) == [
        ("bad-1", "missing threadId, sentAt")
    ]
