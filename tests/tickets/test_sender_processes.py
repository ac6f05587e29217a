"""Several sender hosts: three real `send_replies --once` processes started at once (each its own
worker id: host, pid and a random suffix) share 150 queued replies of three tenants through their
PostgreSQL leases. A real SMTP server counts what it receives by Message-ID: every reply arrives
exactly once, every reply is SENT, and the work is shared (no process idles while replies are due)."""

from __future__ import annotations

import json
from collections import Counter
from email import message_from_bytes, policy

import pytest

from tests.factories import api_client, make_connection, make_member
from tests.faults.test_kills import send_replies
from tests.marketplaces.mailbox.helpers import poll, relay_mail, smtp_connect
from tests.marketplaces.test_poller_processes import poller_env
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONNECTIONS, TICKETS_EACH = 3, 50
SENDERS = 3


def test_three_sender_processes_send_every_reply_exactly_once_and_share_the_work(
    requires_postgres, dovecot, smtp_sink, tmp_path, settings, mail_ca
):
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.TICKETS_AMAZON_ADAPTER = ""
    settings.AMAZON_POLL_WORKERS = 1
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    # Three tenants, each a connection whose relay mailbox holds 50 buyers' mails and whose replies
    # leave through the SMTP server.
    clients = []
    for c in range(CONNECTIONS):
        user = dovecot.add_user()
        for n in range(TICKETS_EACH):
            user.server.append(user.username, relay_mail(c * 1000 + n))
        connection, saved = smtp_connect(user, smtp_sink, make_connection())
        assert saved.check.ok, saved.check
        clients.append((connection, api_client(make_member(connection.tenant))))
    code, summary = poll()
    assert code == 0 and summary["new_messages"] == CONNECTIONS * TICKETS_EACH, summary

    for connection, client in clients:
        for ticket in Ticket.objects.filter(connection_id=connection.id):
            response = client.post(
                f"/api/v1/tickets/{ticket.id}/messages/", {"body": f"Reply to ticket {ticket.id}."}, format="json"
            )
            assert response.status_code == 201, response.content
    replies = TicketMessage.objects.filter(direction=Direction.OUTBOUND)
    assert replies.filter(delivery_status=DeliveryStatus.QUEUED).count() == CONNECTIONS * TICKETS_EACH

    env = poller_env(
        tmp_path,
        AMAZON_USE_MOCK="false",
        AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS="true",
        AMAZON_MAILBOX_CA_FILE=str(mail_ca.ca_path),
        SECRETS_LOCAL_PATH=settings.SECRETS_LOCAL_PATH,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        TICKETS_AMAZON_ADAPTER="",
        TICKETS_SEND_CLAIM_BATCH="3",  # small leases: the processes come back for more, in turn
    )
    senders = [send_replies(env) for _ in range(SENDERS)]
    summaries = []
    for sender in senders:
        out, err = sender.communicate(timeout=300)
        assert sender.returncode == 0, err[-2000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))

    # Every reply SENT, each received once by the server, under the Message-ID recorded on it.
    assert sorted(replies.values_list("delivery_status", flat=True).distinct()) == [DeliveryStatus.SENT]
    received = Counter(
        message_from_bytes(item.raw, policy=policy.default)["Message-ID"].strip("<>")
        for item in smtp_sink.wait_for(CONNECTIONS * TICKETS_EACH, timeout=30)
    )
    assert len(received) == CONNECTIONS * TICKETS_EACH
    assert set(received.values()) == {1}, [mid for mid, count in received.items() if count > 1]
    assert set(received) == set(replies.values_list("delivery_ref", flat=True))
    # The processes shared the queue: the sends add up, and at least two hosts did some.
    assert sum(s["sent"] for s in summaries) == CONNECTIONS * TICKETS_EACH, summaries
    assert sum(s["lost"] + s["failed"] + s["retrying"] for s in summaries) == 0, summaries
    assert sum(1 for s in summaries if s["sent"] > 0) >= 2, summaries
