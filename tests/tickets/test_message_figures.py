"""The list's message figures (preview, counts) are columns of the ticket kept by the database
(migration tickets 0015): after any write of a message, by any writer, concurrent ones included,
they are what counting the ticket's messages afresh gives."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from tests.factories import make_tenant
from tests.marketplaces.test_poller_processes import ROOT, poller_env
from tests.tickets.factories import add_message, make_ticket
from tickets import services
from tickets.ingest import InboundMessage, channel_reply_failed, inbound_messages_file
from tickets.models import MESSAGE_FIGURES, DeliveryStatus, Direction, Ticket, TicketMessage
from tickets.services import MessageKind

URL = "/api/v1/tickets/"


def recounted(ticket_id: int) -> dict[str, object]:
    """The figures counted from the ticket's messages, in Python: the reference."""
    messages = list(TicketMessage.objects.filter(ticket_id=ticket_id))
    conversation = [m for m in messages if m.direction in (Direction.INBOUND, Direction.OUTBOUND)]
    last = max(conversation, key=lambda m: (m.sent_at, m.pk), default=None)
    return {
        "preview_direction": last and last.direction,
        "preview_author_name": last and last.author_name,
        "preview_body": last and last.body[:160],
        "preview_sent_at": last and last.sent_at,
        "message_count": len(conversation),
        "note_count": sum(m.direction == Direction.NOTE for m in messages),
        "failed_count": sum(m.delivery_status == DeliveryStatus.FAILED for m in messages),
    }


def stored(ticket_id: int) -> dict[str, object]:
    return Ticket.objects.filter(pk=ticket_id).values(*MESSAGE_FIGURES).get()


def assert_exact(*tickets: Ticket | int) -> None:
    for ticket in tickets:
        ticket_id = ticket if isinstance(ticket, int) else ticket.pk
        assert stored(ticket_id) == recounted(ticket_id), ticket_id


def test_the_figures_follow_every_write_of_a_message(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = True
    tenant, now = admin.tenant, timezone.now()
    connection_id = uuid.uuid4()
    ticket = make_ticket(tenant, at=now - timedelta(hours=3), connection_id=connection_id, thread_key="t-1")
    other = make_ticket(tenant, inbound=None)
    assert_exact(ticket, other)
    assert stored(other.pk)["message_count"] == 0 and stored(other.pk)["preview_direction"] is None

    # The poller: a follow-up, and an older message fetched late (the preview stays the newest).
    with transaction.atomic():
        inbound_messages_file(
            tenant_id=tenant.pk,
            connection_id=connection_id,
            channel="AMAZON",
            messages=[
                InboundMessage(external_message_id=1, thread_key="t-1", sent_at=now - timedelta(hours=1), body="Newer"),
                InboundMessage(external_message_id=2, thread_key="t-1", sent_at=now - timedelta(hours=5), body="Older"),
            ],
        )
    assert_exact(ticket)
    assert stored(ticket.pk)["preview_body"] == "Newer" and stored(ticket.pk)["message_count"] == 3

    # An agent's reply and note; the reply fails, then its text is edited (the admin).
    reply = services.ticket_message_create(
        tenant=tenant, ticket_id=ticket.pk, author=admin.user, body="é" * 300, now=now
    )
    services.ticket_message_create(
        tenant=tenant, ticket_id=ticket.pk, author=admin.user, body="Internal", kind=MessageKind.NOTE
    )
    assert_exact(ticket)
    assert stored(ticket.pk)["preview_body"] == "é" * 160 and stored(ticket.pk)["note_count"] == 1
    TicketMessage.objects.filter(pk=reply.pk).update(delivery_status=DeliveryStatus.SENT, delivery_ref="<r-1@relay>")
    channel_reply_failed(connection_id=connection_id, reason="Mailbox full", at=now, delivery_ref="<r-1@relay>")
    assert_exact(ticket)
    assert stored(ticket.pk)["failed_count"] == 1
    TicketMessage.objects.filter(pk=reply.pk).update(body="Edited", author_name="Someone else")
    assert_exact(ticket)

    # A message moved to another ticket, one deleted, a rolled-back insert.
    moved = TicketMessage.objects.filter(ticket=ticket, body="Newer").get()
    TicketMessage.objects.filter(pk=moved.pk).update(ticket=other)
    assert_exact(ticket, other)
    assert stored(other.pk)["preview_body"] == "Newer"
    TicketMessage.objects.filter(pk=reply.pk).delete()
    assert_exact(ticket)
    with transaction.atomic():
        add_message(ticket, body="Never")
        transaction.set_rollback(True)
    assert_exact(ticket)

    # What an agent sees: the list's row.
    row = next(r for r in admin_client.get(URL).json()["results"] if r["id"] == ticket.pk)
    figures = stored(ticket.pk)
    assert row["counts"] == {"messages": figures["message_count"], "notes": 1, "failed": 0}
    assert row["last_message"]["body"] == figures["preview_body"]


def test_bookkeeping_that_the_figures_do_not_read_leaves_the_ticket_alone(admin, requires_postgres):
    """The delivery worker updates its replies all day: no recount, no new version of the ticket."""
    ticket = make_ticket(admin.tenant)
    reply = add_message(ticket, direction=Direction.OUTBOUND, body="Queued", delivery_status=DeliveryStatus.QUEUED)

    def version() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT xmin::text FROM tickets_ticket WHERE id = %s", [ticket.pk])
            return cursor.fetchone()[0]

    before = version()
    with transaction.atomic():  # its own transaction: a new version would have a new xmin
        TicketMessage.objects.filter(pk=reply.pk).update(
            delivery_worker="host-1", delivery_attempts=1, send_started_at=timezone.now()
        )
        TicketMessage.objects.filter(pk=reply.pk).update(delivery_status=DeliveryStatus.SENT)  # not FAILED: same
    assert version() == before
    assert_exact(ticket)


def test_saving_a_ticket_does_not_write_stale_figures_back(admin):
    """The admin (and any full save) holds the ticket as it was read; a message filed meanwhile stays counted."""
    ticket = make_ticket(admin.tenant)
    held = Ticket.objects.get(pk=ticket.pk)
    add_message(ticket, body="Filed meanwhile")
    held.subject = "Renamed"
    held.save()
    assert Ticket.objects.get(pk=ticket.pk).subject == "Renamed"
    assert stored(ticket.pk)["message_count"] == 2
    assert_exact(ticket)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_figures_stay_exact_under_concurrent_writers(requires_postgres, tmp_path):
    """Four processes writing on the same two tickets at once, in overlapping transactions."""
    tenant = make_tenant()
    User.objects.create(username="figures-writer")
    tickets = [make_ticket(tenant).pk for _ in range(2)]
    env = poller_env(tmp_path)
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.tickets.figures_writer", str(tmp_path), str(seed), *map(str, tickets)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(writers) and time.monotonic() < deadline:
        assert all(writer.poll() is None for writer in writers), [w.communicate() for w in writers]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    left = {"messages": 0, "notes": 0, "failed": 0}
    for writer in writers:
        out, err = writer.communicate(timeout=180)
        assert writer.returncode == 0, err
        for key, n in json.loads(out).items():
            left[key] += n
    assert_exact(*tickets)
    totals = [stored(pk) for pk in tickets]
    assert sum(t["message_count"] for t in totals) == left["messages"] + 2  # and each ticket's first message
    assert sum(t["note_count"] for t in totals) == left["notes"]
    assert sum(t["failed_count"] for t in totals) == left["failed"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_messages_filed_at_once_on_one_ticket_are_both_counted(requires_postgres):
    """The interleaving that loses a message when a recount does not wait for the ticket's lock:
    the second writer's recount starts while the first writer's transaction is still open."""
    import psycopg

    from tests.marketplaces.test_poller_processes import database_url

    ticket = make_ticket(make_tenant())
    insert = (
        "INSERT INTO tickets_ticketmessage (tenant_id, ticket_id, direction, author_name, body, delivery_status,"
        " delivery_error, delivery_attempts, delivery_ref, delivery_worker, origin, acknowledged_violations,"
        " channel_action, sent_at, created_at) VALUES (%s, %s, 'INBOUND', '', %s, '', '', 0, '', '', '', '[]', '',"
        " now(), now())"
    )
    with psycopg.connect(database_url()) as first, psycopg.connect(database_url()) as second:
        first.execute(insert, [ticket.tenant_id, ticket.pk, "First"])  # its transaction stays open
        filed = threading.Thread(
            target=lambda: (second.execute(insert, [ticket.tenant_id, ticket.pk, "Second"]), second.commit())
        )
        filed.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _waiting_for_a_lock(first):
            time.sleep(0.01)
        assert _waiting_for_a_lock(first), "the second writer never waited for the first"
        first.commit()
        filed.join(timeout=30)
    assert_exact(ticket)
    assert stored(ticket.pk)["message_count"] == 3


def _waiting_for_a_lock(conn) -> bool:
    """Whether another session is waiting for a lock that this session's transaction holds."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
    ).fetchone()
    return bool(row and row[0])
