"""Helpers for the relay-mailbox tests: the corpus, and a connection whose mailbox is a test user on
the real Dovecot."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

from django.core.management import CommandError, call_command

from marketplaces.models import MarketplaceConnection
from marketplaces.services.mailbox import MailboxSaved, SmtpInput, mailbox_settings_save
from tests.factories import make_connection
from tests.mail_servers.dovecot import MailUser

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "relay_mail"


@cache
def manifest() -> dict[str, dict[str, Any]]:
    return json.loads((CORPUS / "manifest.json").read_text())


def corpus_mail(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def corpus_of(kind: str) -> list[str]:
    return [name for name, entry in manifest().items() if entry["kind"] == kind]


def mailbox_connect(
    user: MailUser,
    connection: MarketplaceConnection | None = None,
    *,
    security: str = "none",
    port: int | None = None,
    host: str | None = None,
    folder: str = "INBOX",
    password: str | None = None,
) -> tuple[MarketplaceConnection, MailboxSaved]:
    """Sets a connection's mailbox to `user` on its Dovecot, through the settings service."""
    connection = connection or make_connection()
    saved = mailbox_settings_save(
        tenant=connection.tenant,
        connection_id=connection.id,
        host=host or user.server.host,
        port=port or user.server.port,
        security=security,
        username=user.username,
        password=user.password if password is None else password,
        folder=folder,
    )
    return connection, saved


def poll(*args: str) -> tuple[int, dict[str, Any]]:
    """`poll_amazon --once --json`: the exit code and the summary."""
    out = io.StringIO()
    try:
        call_command("poll_amazon", "--once", "--json", *args, stdout=out)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    text = out.getvalue().strip()
    return code, json.loads(text.splitlines()[-1]) if text else {}


def relay_mail(
    n: int,
    *,
    relay: str | None = None,
    order_id: str | None = None,
    text: str | None = None,
    date: str = "Tue, 01 Dec 2026 10:00:00 +0000",
    padding: int = 0,
) -> bytes:
    """A buyer message as Amazon's relay sends it (amazon.com, plain text), unique by `n`:
    its own Message-ID, and by default its own buyer (relay address) and order."""
    relay = relay or f"buyer{n:06d}@marketplace.amazon.com"
    order_id = order_id or f"111-{n:07d}-{n % 10_000_000:07d}"
    text = text or f"Hello, this is message {n}. Where is my parcel?"
    filler = ("x" * 76 + "\n") * (padding // 77) if padding else ""
    return (
        f"Date: {date}\r\n"
        f'From: "Buyer {n} - Amazon Marketplace" <{relay}>\r\n'
        "To: support@acme-store.example\r\n"
        f"Message-ID: <bench-{n:08d}-0000@email.amazonses.com>\r\n"
        f"Subject: Inquiry from Amazon customer Buyer {n} (Order: {order_id})\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "X-Space-Notification-Type: BBC_MESSAGE_SENT_TO_MERCHANT\r\n"
        "\r\n"
        "Dear Seller,\r\n\r\nYou have received a message from an Amazon customer:\r\n\r\n"
        f"Order ID {order_id}:\r\n1 of Bamboo Wireless Keyboard [ASIN: B0C7K2M9QX]\r\n\r\n"
        "------------- Message: -------------\r\n\r\n"
        f"{text}\r\n{filler}\r\n"
        "------------- End message -------------\r\n\r\n"
        "Was this email helpful?\r\n"
    ).encode()


SELLER_LOGIN, SELLER_PASSWORD = "seller@acme.example", "secret"  # the SMTP sink's default user
FROM_ADDRESS = "replies@acme-store.example"


def smtp_connect(
    user: MailUser,
    sink: Any,
    connection: MarketplaceConnection | None = None,
    *,
    security: str = "starttls",
    password: str = SELLER_PASSWORD,
    from_address: str = FROM_ADDRESS,
    port: int | None = None,
) -> tuple[MarketplaceConnection, MailboxSaved]:
    """A connection whose mailbox is `user` on its Dovecot and whose replies leave through `sink`
    (an aiosmtpd sink from tests.mail_servers), set through the settings service."""
    connection = connection or make_connection()
    saved = mailbox_settings_save(
        tenant=connection.tenant,
        connection_id=connection.id,
        host=user.server.host,
        port=user.server.port,
        security="none",
        username=user.username,
        password=user.password,
        folder="INBOX",
        smtp=SmtpInput(
            host=sink.host,
            port=port or sink.port,
            security=security,
            username=SELLER_LOGIN,
            password=password,
            from_address=from_address,
        ),
    )
    return connection, saved
