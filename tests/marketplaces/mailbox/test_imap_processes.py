"""Relay mailboxes read by real poller processes on PostgreSQL and a real Dovecot: a poller killed in
the middle of its run, then run again, and two pollers reading one mailbox at the same time, file
every mail exactly once."""

from __future__ import annotations

import json
import signal
import time

import pytest
from django.db.models import Count

from marketplaces.models import ExternalMessage, MarketplaceConnection
from marketplaces.sources.imap import ImapCursor
from tests.factories import make_connection, make_tenant
from tests.marketplaces.mailbox.helpers import mailbox_connect, relay_mail
from tests.marketplaces.test_poller_processes import poller_env, start_poller
from tickets.models import Ticket, TicketMessage

pytestmark = [pytest.mark.django_db(transaction=True)]


def mailbox_env(tmp_path, settings, **extra: str) -> dict[str, str]:
    return poller_env(
        tmp_path,
        AMAZON_USE_MOCK="false",
        AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS="true",
        SECRETS_LOCAL_PATH=settings.SECRETS_LOCAL_PATH,  # where the test stored the mailbox passwords
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        **extra,
    )


def fill_mailboxes(dovecot, count: int, per_mailbox: int) -> list[MarketplaceConnection]:
    tenant = make_tenant()
    connections = []
    for i in range(count):
        user = dovecot.add_user()
        dovecot.bulk_append(user.username, (relay_mail(i * per_mailbox + n) for n in range(per_mailbox)))
        connection, saved = mailbox_connect(user, make_connection(tenant))
        assert saved.check.ok
        connections.append(connection)
    return connections


def assert_every_mail_filed_once(total: int) -> None:
    assert ExternalMessage.objects.count() == total
    assert TicketMessage.objects.count() == total
    assert Ticket.objects.count() == total  # one buyer and order per mail
    assert not TicketMessage.objects.values("external_message_id").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert set(TicketMessage.objects.values_list("external_message_id", flat=True)) == set(
        ExternalMessage.objects.values_list("id", flat=True)
    )


def run_until_done(env: dict[str, str], *, runs: int) -> list[dict]:
    summaries = []
    for _ in range(runs):
        poller = start_poller(env, "--once", "--json", "--force")
        out, err = poller.communicate(timeout=240)
        assert poller.returncode == 0, err[-2000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
        if summaries[-1]["fetched"] == 0:
            break
    return summaries


def test_a_poller_killed_mid_run_then_rerun_files_every_mail_once(requires_postgres, dovecot, tmp_path, settings):
    fill_mailboxes(dovecot, 12, 100)
    env = mailbox_env(
        tmp_path,
        settings,
        AMAZON_MAILBOX_BATCH="40",
        AMAZON_POLL_LEASE_SECONDS="2",
        AMAZON_POLL_CLAIM_BATCH="2",
        AMAZON_POLL_WORKERS="2",
    )
    victim = start_poller(env, "--once")
    completed = 0
    deadline = time.monotonic() + 120
    while completed < 5 and time.monotonic() < deadline:
        line = victim.stderr.readline()
        if not line:
            break
        completed += "Poll completed" in line
    victim.send_signal(signal.SIGKILL)
    # Its output pipes close only once every process holding them is gone: its mail-parsing
    # processes too, which exit on their own when the poller is killed.
    victim.communicate(timeout=30)
    assert completed == 5, "killed in the middle of its run"

    # Whatever it committed is whole: each polled mailbox has its first batch filed, no more, no less.
    filed = ExternalMessage.objects.count()
    assert 5 * 40 <= filed < 12 * 100 and filed % 40 == 0
    assert TicketMessage.objects.count() == filed

    time.sleep(2.5)  # the dead worker's leases expire
    summaries = run_until_done(env, runs=10)
    assert summaries[-1]["fetched"] == 0
    assert sum(s["new_messages"] for s in summaries) == 1200 - filed
    assert_every_mail_filed_once(1200)


def test_two_pollers_reading_one_mailbox_at_once_file_every_mail_once(requires_postgres, dovecot, tmp_path, settings):
    [connection] = fill_mailboxes(dovecot, 1, 3000)
    # A lease that runs out at once: the second worker takes the connection while the first is still
    # reading it, and both file the same mails; only the database's unique constraints keep them
    # from filing a mail twice.
    env = mailbox_env(
        tmp_path, settings, AMAZON_POLL_LEASE_SECONDS="0", AMAZON_MAILBOX_BATCH="3000", AMAZON_POLL_WORKERS="1"
    )
    first = start_poller(env, "--once", "--json", "--force")
    while "Starting poll" not in (line := first.stderr.readline()):
        assert line, "the first poller ended before polling"
    second = start_poller(env, "--once", "--json", "--force")
    summaries = []
    for poller in (first, second):
        out, err = poller.communicate(timeout=240)
        assert poller.returncode == 0, err[-2000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))

    assert [s["connections"] for s in summaries] == [1, 1], "both pollers read the mailbox"
    assert [s["fetched"] for s in summaries] == [3000, 3000]
    assert sum(s["new_messages"] for s in summaries) == 3000
    assert_every_mail_filed_once(3000)
    connection.refresh_from_db()
    assert ImapCursor.parse(connection.poll_cursor).last_uid == 3000
