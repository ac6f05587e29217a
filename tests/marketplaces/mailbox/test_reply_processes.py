"""A real `send_replies` process killed while the seller's mail server holds a reply it has received
whole but not yet acknowledged (the one moment a crash leaves the outcome unknown): the next run does
not send it again, it makes it FAILED as "delivery uncertain" for an agent to decide. PostgreSQL,
real processes, a real mail server speaking SMTP on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from marketplaces.mailbox.passwords import mailbox_password_path, mailbox_password_store
from marketplaces.models import Mailbox
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.mailbox.helpers import FROM_ADDRESS, mailbox_connect, poll, relay_mail, smtp_connect
from tests.marketplaces.test_poller_processes import poller_env
from tests.net import HOST
from tickets.delivery import DELIVERY_UNCERTAIN, replies_send_due
from tickets.models import DeliveryStatus, Ticket, TicketMessage

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]


class SilentAfterData:
    """An SMTP server (no AUTH) that reads one whole message, then never answers it: the window in
    which the sender cannot know whether the mail was taken."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.received = threading.Event()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                conn.sendall(b"220 silent ESMTP\r\n")
                data = b""
                while line := reader.readline():
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        conn.sendall(b"250 silent\r\n")
                    elif verb == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        while not data.endswith(b"\r\n.\r\n") and (chunk := reader.readline()):
                            data += chunk
                        self.received.set()
                        self._stop.wait(60)  # says nothing until the test ends
                        return
                    else:
                        conn.sendall(b"250 OK\r\n")

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)


def test_a_sender_killed_while_the_server_holds_the_reply_does_not_send_it_twice(
    requires_postgres, mailbox_user, smtp_sink, tmp_path, settings, mail_ca
):
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 1
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    mailbox_user.server.append(mailbox_user.username, relay_mail(1))
    connection, _ = mailbox_connect(mailbox_user, make_connection())
    assert poll()[1]["new_messages"] == 1
    ticket = Ticket.objects.get()
    client = api_client(make_member(connection.tenant))
    response = client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"body": "On its way."}, format="json")
    reply = TicketMessage.objects.get(pk=response.json()["id"])
    silent = SilentAfterData()
    path = mailbox_password_path(tenant_id=connection.tenant_id, connection_id=connection.id, protocol="smtp")
    mailbox_password_store(path=path, password="unused")  # a relay without AUTH: no login is made
    Mailbox.objects.filter(connection=connection).update(
        smtp_host=HOST,
        smtp_port=silent.port,
        smtp_security="none",
        smtp_username="",
        smtp_from_address=FROM_ADDRESS,
        smtp_secret_ref=path,
    )
    env = poller_env(
        tmp_path,
        AMAZON_USE_MOCK="false",
        AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS="true",
        AMAZON_MAILBOX_TIMEOUT="60",
        SECRETS_LOCAL_PATH=settings.SECRETS_LOCAL_PATH,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        TICKETS_SEND_LEASE_SECONDS="1",
    )
    sender = subprocess.Popen(
        [sys.executable, "manage.py", "send_replies", "--once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert silent.received.wait(60), sender.stderr.read() if sender.poll() is not None else "no mail in 60 s"
        os.kill(sender.pid, signal.SIGKILL)  # the server has the whole mail; its "250" never comes
        sender.wait(10)
    finally:
        silent.close()
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_ref) == (DeliveryStatus.QUEUED, "")
    assert reply.send_started_at is not None  # what the dead worker left: "it was being sent"

    # The seller's server works again; the next run must not send the reply blindly.
    smtp_connect(mailbox_user, smtp_sink, connection)
    summary = replies_send_due(now=timezone.now() + timedelta(seconds=5))

    reply.refresh_from_db()
    assert (summary.claimed, summary.sent, summary.failed) == (1, 0, 1)
    assert (reply.delivery_status, reply.delivery_error) == (DeliveryStatus.FAILED, DELIVERY_UNCERTAIN)
    assert smtp_sink.messages == []
    assert silent.connections == 1
    # The agent checked Seller Central and sends it again: exactly one more mail.
    assert client.post(f"/api/v1/tickets/{ticket.id}/messages/{reply.id}/retry/").status_code == 200
    assert replies_send_due().sent == 1
    assert len(smtp_sink.wait_for(1)) == 1
