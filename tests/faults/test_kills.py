"""Workers killed (SIGKILL) at any point: the poller twenty times at random moments, checked for
exactly-once after each kill; send_replies with one reply in the channel's hands and another claimed
but not started (at most once each). Real processes on PostgreSQL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db.models import Count

from marketplaces.models import ExternalMessage, MarketplaceConnection
from tests.factories import make_member
from tests.marketplaces.test_poller_processes import ROOT, make_connections, poller_env, start_poller
from tests.tickets.factories import make_ticket
from tickets.delivery import DELIVERY_UNCERTAIN
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
        # One batch per connection for the whole test: on a loaded machine the twenty kills can
        # outlast the mock's default 5-minute window, which would give a connection a second batch.
        AMAZON_MOCK_WINDOW_SECONDS="86400",
    )
    moments = random.Random(20261202)  # the same kill points every run
    progress = []
    for _ in range(KILLS):
        before = ExternalMessage.objects.count()
        poller = start_poller(env, "--once")
        # Killed at a random moment once the run files (not from the process start: on a loaded
        # machine Django's start-up alone can outlast a fixed delay, and every kill would miss the run).
        deadline = time.monotonic() + 60
        while ExternalMessage.objects.count() == before and poller.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(moments.uniform(0.0, 0.6))
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


LEASE_SECONDS = 12


def test_send_replies_killed_mid_send_sends_nothing_twice_and_the_rest_after_the_lease(requires_postgres, tmp_path):
    member = make_member()
    ticket = make_ticket(member.tenant)
    in_hand, waiting = (
        TicketMessage.objects.create(
            tenant=member.tenant,
            ticket=ticket,
            direction=Direction.OUTBOUND,
            body=body,
            sent_at=ticket.last_message_at,
            delivery_status=DeliveryStatus.QUEUED,
            next_attempt_at=ticket.last_message_at - timedelta(seconds=10 - n),  # due, claimed in this order
        )
        for n, body in enumerate(["Your parcel left today.", "And here is the invoice."])
    )
    env = poller_env(
        tmp_path,
        AMAZON_USE_MOCK="false",
        TICKETS_AMAZON_ADAPTER="tests.faults.adapters.RecordingChannel",
        # Long enough for a new process to start and claim while the dead worker's lease still
        # runs, on a loaded machine too (Django's start-up alone can take seconds).
        TICKETS_SEND_LEASE_SECONDS=str(LEASE_SECONDS),
        FAULTS_DIR=str(tmp_path),
    )
    worker = send_replies(env)
    deadline = time.monotonic() + 30
    while not (tmp_path / f"claimed-{in_hand.pk}").exists():
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.05)
    # Both claimed and committed; the first is in the channel's hands (it may reach the buyer or
    # not: nobody can tell), the second not started.
    claimed_at = time.monotonic()  # the lease ran from a moment before this
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    early = send_replies(env)
    out, _ = early.communicate(timeout=60)
    assert time.monotonic() - claimed_at < LEASE_SECONDS, "the early run came after the lease: the machine is too slow"
    assert '"claimed": 0' in out  # still leased to the dead worker: nobody sends them meanwhile
    time.sleep(max(0.0, LEASE_SECONDS + 0.2 - (time.monotonic() - claimed_at)))
    late = send_replies(env)
    out, err = late.communicate(timeout=60)
    assert '"sent": 1' in out and '"failed": 1' in out, out + err

    assert (tmp_path / "sent.log").read_text().split() == [str(waiting.pk)]  # each sent at most once
    in_hand.refresh_from_db()
    waiting.refresh_from_db()
    assert (waiting.delivery_status, waiting.delivery_attempts, waiting.delivery_worker) == (DeliveryStatus.SENT, 2, "")
    # Not sent again blindly: FAILED for an agent to check on the marketplace and retry by hand.
    assert (in_hand.delivery_status, in_hand.delivery_error) == (DeliveryStatus.FAILED, DELIVERY_UNCERTAIN)
