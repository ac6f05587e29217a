"""Workers killed (SIGKILL) at any point: the poller twenty times at random moments, checked for
exactly-once after each kill; send_replies between its claim and its send. Real processes on
PostgreSQL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
from django.db.models import Count

from marketplaces.models import ExternalMessage, MarketplaceConnection
from tests.factories import make_member
from tests.marketplaces.test_poller_processes import ROOT, make_connections, poller_env, start_poller
from tests.tickets.factories import make_ticket
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
CONNECTIONS, PER_CONNECTION, KILLS = 300, 10, 20


def assert_exactly_once_so_far() -> int:
    """Whatever a killed run left behind: each stored message filed once, with its ticket."""
    messages = ExternalMessage.objects.count()
    assert TicketMessage.objects.filter(direction=Direction.INBOUND).count() == messages
    assert not TicketMessage.objects.values("external_message_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    filed = set(TicketMessage.objects.values_list("external_message_id", flat=True))
    assert filed == set(ExternalMessage.objects.values_list("id", flat=True))
    # A connection is filed whole or not at all: its batch commits in one transaction.
    assert set(ExternalMessage.objects.values("connection").annotate(n=Count("id")).values_list("n", flat=True)) <= {
        PER_CONNECTION
    }
    assert not Ticket.objects.filter(messages__isnull=True).exists()
    return messages


def test_the_poller_killed_twenty_times_at_random_files_everything_once(requires_postgres, tmp_path):
    make_connections(CONNECTIONS)
    env = poller_env(
        tmp_path,
        AMAZON_MOCK_MESSAGES_PER_POLL=str(PER_CONNECTION),
        AMAZON_POLL_LEASE_SECONDS="1",
        AMAZON_POLL_CLAIM_BATCH="5",
    )
    moments = random.Random(20261202)  # the same kill points every run
    progress = []
    for _ in range(KILLS):
        poller = start_poller(env, "--once")
        time.sleep(moments.uniform(0.3, 2.0))
        poller.send_signal(signal.SIGKILL)
        poller.wait(timeout=30)
        progress.append(assert_exactly_once_so_far())
        time.sleep(1.1)  # the killed run's leases run out

    final = start_poller(env, "--once")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, out + err
    assert assert_exactly_once_so_far() == CONNECTIONS * PER_CONNECTION
    assert not MarketplaceConnection.objects.filter(last_polled_at__isnull=True).exists()
    # The kills landed mid-run: some runs had filed part of the mailboxes when they died.
    assert any(0 < filed < CONNECTIONS * PER_CONNECTION for filed in progress), progress


def send_replies(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "send_replies", "--once", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_send_replies_killed_between_claim_and_send_sends_once_after_the_lease(requires_postgres, tmp_path):
    member = make_member()
    ticket = make_ticket(member.tenant)
    reply = TicketMessage.objects.create(
        tenant=member.tenant,
        ticket=ticket,
        direction=Direction.OUTBOUND,
        body="Your parcel left today.",
        sent_at=ticket.last_message_at,
        delivery_status=DeliveryStatus.QUEUED,
        next_attempt_at=ticket.last_message_at,
    )
    env = poller_env(
        tmp_path,
        AMAZON_USE_MOCK="false",
        TICKETS_AMAZON_ADAPTER="tests.faults.adapters.RecordingChannel",
        TICKETS_SEND_LEASE_SECONDS="3",
        FAULTS_DIR=str(tmp_path),
    )
    worker = send_replies(env)
    deadline = time.monotonic() + 30
    while not (tmp_path / f"claimed-{reply.pk}").exists():
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)  # claimed and committed, not sent
    worker.wait(timeout=30)

    early = send_replies(env)
    out, _ = early.communicate(timeout=60)
    assert '"claimed": 0' in out  # still leased to the dead worker: nobody sends it meanwhile
    time.sleep(3.2)
    late = send_replies(env)
    out, err = late.communicate(timeout=60)
    assert late.returncode == 0 and '"sent": 1' in out, out + err

    assert (tmp_path / "sent.log").read_text().split() == [str(reply.pk)]  # the buyer got it once
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts, reply.delivery_worker) == (DeliveryStatus.SENT, 2, "")
