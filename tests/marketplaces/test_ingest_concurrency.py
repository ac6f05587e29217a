"""Two pollers filing one mailbox at once, as when a lease ran out while its worker was still busy:
the unique constraints decide, so every message is filed once and a thread gets one ticket. Needs
PostgreSQL, where the two transactions really run concurrently (SQLite serializes every writer)."""

from __future__ import annotations

import pytest

from marketplaces.models import ExternalMessage
from marketplaces.polling.claim import ClaimedConnection
from marketplaces.polling.filing import messages_ingest
from marketplaces.sources import FetchResult
from marketplaces.sources.base import ConnectionSnapshot
from tests.factories import make_connection
from tests.marketplaces.scripted_sources import ScriptedSource, raw_message
from tests.threads import race
from tickets.models import Ticket, TicketMessage, TicketStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_pollers_filing_the_same_thread_at_once(requires_postgres):
    connection = make_connection(seller="S1")
    claimed = ClaimedConnection(
        snapshot=ConnectionSnapshot(
            id=str(connection.id),
            tenant_id=str(connection.tenant_id),
            selling_partner_id="S1",
            region="EU",
            marketplace_ids=(),
            cursor="",
        ),
        secret_ref="",
    )
    for round_no in range(5):  # repeat: a race that is lost only sometimes must still be caught
        thread = f"order:race-{round_no}"
        first, shared, last = (raw_message(round_no * 10 + n, thread=thread) for n in (1, 2, 3))
        # Each poller fetched an overlapping page: the shared message is in both.
        pages = [[first, shared], [shared, last]]

        results = race(
            2,
            lambda i, pages=pages: messages_ingest(
                claimed=claimed, fetch=FetchResult(raw_messages=pages[i], next_cursor="after"), source=ScriptedSource()
            ),
        )

        assert not [r for r in results if isinstance(r, Exception)], results
        assert sum(r.new_messages for r in results) == 3
        assert sum(r.new_tickets for r in results) == 1
        ticket = Ticket.objects.get(thread_key=thread)
        assert ticket.status == TicketStatus.OPEN
        assert TicketMessage.objects.filter(ticket=ticket).count() == 3
        assert ExternalMessage.objects.filter(thread_key=thread).count() == 3
        assert ticket.last_message_at == max(m.sent_at for m in TicketMessage.objects.filter(ticket=ticket))
