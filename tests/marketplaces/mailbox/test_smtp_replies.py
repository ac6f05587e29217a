"""Replies reach the buyer: the Amazon adapter sends an agent's reply by SMTP (a real aiosmtpd server
with STARTTLS and AUTH) from the seller's approved address to the buyer's relay address, threaded;
SMTP failures are retried or final as they should be; and what Amazon mails back into the relay
mailbox (a real Dovecot) afterwards — a rejection notice, a bounce, a copy of a reply written in
Seller Central — lands on the right reply or ticket."""

from __future__ import annotations

import email
import logging
import socket
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from keybuzz.secrets import SecretNotFound, get_secret_store
from marketplaces.models import Mailbox, MailboxActivity
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.mailbox.helpers import FROM_ADDRESS, SELLER_LOGIN, poll, relay_mail, smtp_connect
from tickets.delivery import DELIVERY_UNCERTAIN, replies_send_due
from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage

pytestmark = pytest.mark.django_db

RELAY = "7kq2m9x4vtpl3n8d+A1B2C3D4E5F6G7@marketplace.amazon.com"
ORDER = "114-3941689-8772232"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
TEXT = "Rücksendung: bitte das Etikett ausdrucken.\n".encode()
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n"


@pytest.fixture(autouse=True)
def relay_only(settings, mail_ca):
    """Only the relay mailbox reads messages; only SMTP sends replies; the sink's CA is trusted."""
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.TICKETS_AMAZON_ADAPTER = ""
    settings.AMAZON_POLL_WORKERS = 1
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    settings.AMAZON_MAILBOX_TIMEOUT = 5
    settings.TICKETS_SEND_MAX_ATTEMPTS = 3


def buyer_ticket(user, sink, *, text: str = "Where is my keyboard? It was due yesterday.", **smtp):
    """A buyer's mail in the relay mailbox, polled into a ticket of a connection that replies via `sink`."""
    user.server.append(user.username, relay_mail(1, relay=RELAY, order_id=ORDER, text=text))
    connection, saved = smtp_connect(user, sink, **smtp)
    code, summary = poll()
    assert (code, summary["new_messages"]) == (0, 1), summary
    ticket = Ticket.objects.get(connection_id=connection.id)
    owner = make_member(connection.tenant)
    return connection, saved, ticket, api_client(owner)


def reply(client, ticket, body: str, **extra) -> TicketMessage:
    response = client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"body": body, **extra}, format="json")
    assert response.status_code == 201, response.content
    return TicketMessage.objects.get(pk=response.json()["id"])


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


# --- Settings -----------------------------------------------------------------------------------


def put_mailbox(client, connection, user, sink, **smtp_fields):
    smtp = {
        "host": sink.host,
        "port": sink.port,
        "security": "starttls",
        "username": SELLER_LOGIN,
        "password": "secret",
        "fromAddress": FROM_ADDRESS,
    } | smtp_fields
    imap = {"host": user.server.host, "port": user.server.port, "security": "none", "username": user.username}
    return client.put(
        f"/api/v1/marketplaces/amazon/connections/{connection.id}/mailbox",
        {"imap": imap | {"password": user.password}, "smtp": smtp},
        format="json",
    )


def test_smtp_settings_are_saved_checked_and_never_echo_the_password(mailbox_user, smtp_sink):
    connection = make_connection()
    client = api_client(make_member(connection.tenant))

    response = put_mailbox(client, connection, mailbox_user, smtp_sink)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["smtp"] == {
        "host": smtp_sink.host,
        "port": smtp_sink.port,
        "security": "starttls",
        "username": SELLER_LOGIN,
        "fromAddress": FROM_ADDRESS,
        "passwordSet": True,
    }
    assert body["check"] == {"imap": {"ok": True}, "smtp": {"ok": True}}
    assert "secret" not in response.content.decode()
    assert smtp_sink.auth_attempts == [(SELLER_LOGIN, True)]  # a real login was made
    mailbox = Mailbox.objects.get(connection=connection)
    assert "secret" not in str([getattr(mailbox, f.attname) for f in Mailbox._meta.fields])
    assert get_secret_store().read(mailbox.smtp_secret_ref) == {"password": "secret"}
    assert client.get(f"/api/v1/marketplaces/amazon/connections/{connection.id}/mailbox").json()["smtp"] == body["smtp"]


def test_a_wrong_smtp_password_is_saved_reported_and_shown_on_the_status(mailbox_user, smtp_sink):
    connection = make_connection()
    client = api_client(make_member(connection.tenant))

    response = put_mailbox(client, connection, mailbox_user, smtp_sink, password="wrong-pass")

    assert response.status_code == 200
    check = response.json()["check"]["smtp"]
    assert (check["ok"], check["code"]) == (False, "smtp_auth_failed")
    assert "wrong-pass" not in response.content.decode()
    status = client.get("/api/v1/marketplaces/amazon/status").json()
    state = next(c for c in status["connections"] if c["id"] == str(connection.id))["mailbox"]
    assert state["smtpConfigured"] is True
    assert state["smtpLastError"] == check["message"]
    # Fixed with the right password: the error goes away.
    assert put_mailbox(client, connection, mailbox_user, smtp_sink).json()["check"]["smtp"] == {"ok": True}


def test_plain_smtp_is_refused_to_a_host_that_is_not_loopback(mailbox_user, smtp_sink):
    connection = make_connection()
    client = api_client(make_member(connection.tenant))

    response = put_mailbox(client, connection, mailbox_user, smtp_sink, host="smtp.example.com", security="none")

    assert response.status_code == 400
    assert response.json()["code"] == "insecure_mailbox"
    assert not Mailbox.objects.exists()


def test_smtp_settings_stay_when_omitted_and_go_with_null_or_delete(mailbox_user, smtp_sink):
    connection = make_connection()
    client = api_client(make_member(connection.tenant))
    url = f"/api/v1/marketplaces/amazon/connections/{connection.id}/mailbox"
    put_mailbox(client, connection, mailbox_user, smtp_sink)
    imap = {"host": mailbox_user.server.host, "port": mailbox_user.server.port, "security": "none"}
    imap["username"] = mailbox_user.username
    ref = Mailbox.objects.get().smtp_secret_ref

    kept = client.put(url, {"imap": imap}, format="json")
    removed = client.put(url, {"imap": imap, "smtp": None}, format="json")

    assert kept.json()["smtp"]["passwordSet"] is True
    assert kept.json()["check"]["smtp"] == {"ok": True}
    assert removed.json()["smtp"] is None
    assert "smtp" not in removed.json()["check"]
    with pytest.raises(SecretNotFound):
        get_secret_store().read(ref)


def test_another_tenants_connection_is_a_404_for_smtp_settings_too(mailbox_user, smtp_sink):
    mine, theirs = make_connection(), make_connection()
    client = api_client(make_member(mine.tenant))

    response = put_mailbox(client, theirs, mailbox_user, smtp_sink)

    assert response.status_code == 404
    assert smtp_sink.auth_attempts == []


# --- Sending ------------------------------------------------------------------------------------


def test_a_reply_reaches_the_relay_address_threaded_with_its_files(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    uploads = []
    for name, data in (("label.png", PNG), ("Rücksendeschein.pdf", PDF), ("notes.txt", TEXT)):
        response = client.post(
            f"/api/v1/tickets/{ticket.id}/attachments/", {"file": _file(name, data)}, format="multipart"
        )
        uploads.append(response.json()["id"])
    body = "Hello Jennifer,\n\nyour keyboard left today (order 114-3941689-8772232).\nGrüße, Acme Store"
    sent = reply(client, ticket, body, attachments=uploads)

    summary = replies_send_due()

    assert (summary.sent, summary.failed) == (1, 0)
    [received] = smtp_sink.wait_for(1)
    assert (received.mail_from, received.rcpt_tos) == (FROM_ADDRESS, [RELAY])
    assert (received.authenticated_as, received.tls) == (SELLER_LOGIN, True)
    mail = parsed(received.raw)
    sent.refresh_from_db()
    assert sent.delivery_status == DeliveryStatus.SENT
    assert mail["From"] == FROM_ADDRESS
    assert mail["To"] == RELAY
    assert mail["Subject"] == f"Re: Inquiry from Amazon customer Buyer 1 (Order: {ORDER})"
    assert mail["In-Reply-To"] == mail["References"] == "<bench-00000001-0000@email.amazonses.com>"
    assert mail["Message-ID"] == f"<{sent.delivery_ref}>"
    assert sent.delivery_ref.endswith("@acme-store.example")
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    assert (text.get_content_type(), text.get_content_charset()) == ("text/plain", "utf-8")
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == body  # CRLF on the wire
    files = [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True)) for p in mail.iter_attachments()]
    assert files == [
        ("label.png", "image/png", PNG),
        ("Rücksendeschein.pdf", "application/pdf", PDF),
        ("notes.txt", "text/plain", TEXT),
    ]
    assert list(mail.iter_attachments())[2].get_content() == TEXT.decode()  # declared UTF-8
    assert b"<html" not in received.raw.lower()


def _file(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_a_reply_answers_the_latest_buyer_mail_and_its_case_suffix(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    follow_up_relay = RELAY.replace("+A1B2C3D4E5F6G7", "+Z9Y8X7")
    later = relay_mail(2, relay=follow_up_relay, order_id=ORDER, date="Tue, 01 Dec 2026 12:00:00 +0000")
    mailbox_user.server.append(mailbox_user.username, later)
    assert poll("--force")[1]["new_messages"] == 1
    assert Ticket.objects.count() == 1  # the same thread

    reply(client, ticket, "Thanks, on its way.")
    replies_send_due()

    mail = parsed(smtp_sink.wait_for(1)[0].raw)
    assert mail["To"] == follow_up_relay
    assert mail["In-Reply-To"] == "<bench-00000002-0000@email.amazonses.com>"


def test_a_4xx_is_retried_later_and_then_sent_once(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    smtp_sink.fail_next(451, "4.3.0 Mailbox temporarily unavailable", stage="DATA")

    first = replies_send_due()
    sent.refresh_from_db()

    assert (first.retrying, sent.delivery_status) == (1, DeliveryStatus.QUEUED)
    assert "451 4.3.0 Mailbox temporarily unavailable" in sent.delivery_error
    second = replies_send_due(now=timezone.now() + timedelta(hours=2))
    sent.refresh_from_db()
    assert (second.sent, sent.delivery_status, sent.delivery_attempts) == (1, DeliveryStatus.SENT, 2)
    assert len(smtp_sink.messages) == 1


@pytest.mark.parametrize(
    ("stage", "answer", "shown"),
    [
        ("DATA", "5.7.1 Message rejected as spam", "550 5.7.1 Message rejected as spam"),
        ("RCPT", "5.1.1 No such user", "550 5.1.1 No such user"),
        ("MAIL", "5.7.1 Sender address rejected", "550 5.7.1 Sender address rejected"),
    ],
)
def test_a_5xx_fails_the_reply_at_once_with_the_servers_words(mailbox_user, smtp_sink, stage, answer, shown):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    smtp_sink.fail_next(550, answer, stage=stage)

    summary = replies_send_due()

    sent.refresh_from_db()
    ticket.refresh_from_db()
    assert (summary.failed, sent.delivery_status, sent.delivery_attempts) == (1, DeliveryStatus.FAILED, 1)
    assert shown in sent.delivery_error
    assert ticket.response_due_at is not None  # the buyer is still waiting: the clock runs again
    assert smtp_sink.messages == []


def test_an_smtp_login_refused_fails_the_reply_and_shows_on_the_status(mailbox_user, smtp_sink):
    connection, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    smtp_sink.auth_fail_next()

    replies_send_due()

    sent.refresh_from_db()
    assert sent.delivery_status == DeliveryStatus.FAILED
    mailbox = Mailbox.objects.get(connection=connection)
    assert mailbox.smtp_last_error_code == "smtp_auth_failed"
    assert "secret" not in sent.delivery_error and "secret" not in mailbox.smtp_last_error
    status = client.get("/api/v1/marketplaces/amazon/status").json()["connections"][0]["mailbox"]
    assert status["smtpLastError"] == mailbox.smtp_last_error
    # The agent sends it again once the login works: delivered, and the status is clean again.
    assert client.post(f"/api/v1/tickets/{ticket.id}/messages/{sent.id}/retry/").status_code == 200
    assert replies_send_due().sent == 1
    assert Mailbox.objects.get(connection=connection).smtp_last_error == ""


def test_an_smtp_server_that_does_not_answer_is_retried(mailbox_user, smtp_sink, settings):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink, port=port)
    sent = reply(client, ticket, "Your parcel left today.")

    summary = replies_send_due()

    sent.refresh_from_db()
    assert (summary.retrying, sent.delivery_status) == (1, DeliveryStatus.QUEUED)
    assert sent.delivery_error


def test_a_reply_whose_send_was_interrupted_is_not_sent_again_blindly(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    # What a worker killed between "send started" and "sent" leaves behind: its mark, an expired lease.
    past = timezone.now() - timedelta(minutes=10)
    TicketMessage.objects.filter(pk=sent.pk).update(
        send_started_at=past, delivery_worker="dead-worker", next_attempt_at=past, delivery_attempts=1
    )

    summary = replies_send_due()

    sent.refresh_from_db()
    assert (summary.failed, sent.delivery_status, sent.delivery_error) == (1, DeliveryStatus.FAILED, DELIVERY_UNCERTAIN)
    assert smtp_sink.messages == []
    # The agent checked Seller Central and sends it again: it goes out once.
    assert client.post(f"/api/v1/tickets/{ticket.id}/messages/{sent.id}/retry/").status_code == 200
    assert replies_send_due().sent == 1
    assert len(smtp_sink.wait_for(1)) == 1


# --- What comes back ----------------------------------------------------------------------------


def rejection_notice(message_id: str, *, in_reply_to: bool = True) -> bytes:
    """Amazon's notice that a reply was not delivered (the shape of the relay corpus's 38-…)."""
    threading = f"In-Reply-To: <{message_id}>\r\nReferences: <{message_id}>\r\n" if in_reply_to else ""
    return (
        "Date: Tue, 01 Dec 2026 10:20:00 +0000\r\n"
        'From: "Amazon Seller Notifications" <donotreply@amazon.com>\r\n'
        "To: support@acme-store.example\r\n"
        "Message-ID: <0100019a83e5dc62-notice@email.amazonses.com>\r\n"
        f"{threading}"
        f"Subject: Message delivery failure: Re: Inquiry from Amazon customer Buyer 1 (Order: {ORDER})\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        "Hello,\r\n\r\n"
        f"We were unable to deliver the message you sent to Buyer 1 ({RELAY}) because the buyer has chosen "
        "to opt out of receiving unsolicited messages.\r\n\r\n"
        "Original message details:\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nSincerely,\r\nAmazon Seller Support\r\n"
    ).encode()


def dsn_bounce(message_id: str) -> bytes:
    boundary = "dsn-boundary-1"
    return (
        "Date: Tue, 01 Dec 2026 10:21:00 +0000\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.acme-store.example>\r\n"
        f"To: {FROM_ADDRESS}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.acme-store.example>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme-store.example\r\n\r\n"
        f"Final-Recipient: rfc822; {RELAY}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 Recipient address rejected\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {FROM_ADDRESS}\r\nTo: {RELAY}\r\nMessage-ID: <{message_id}>\r\nSubject: Re: Inquiry\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def seller_central_copy(text: str, *, relay: str = RELAY, date: str = "Tue, 01 Dec 2026 11:00:00 +0000") -> bytes:
    return (
        f"Date: {date}\r\n"
        'From: "Amazon Seller Central" <donotreply@amazon.com>\r\n'
        "To: support@acme-store.example\r\n"
        f"Message-ID: <copy-{abs(hash(text))}@email.amazonses.com>\r\n"
        f"Subject: Your e-mail to Buyer 1 (Order: {ORDER})\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        "X-Space-Notification-Type: BBC_MESSAGE_CONFIRMATION_TO_MERCHANT\r\n\r\n"
        "Dear Seller,\r\n\r\n"
        f"This is a copy of the message you sent to Buyer 1 ({relay}) from Seller Central.\r\n\r\n"
        f"Order ID {ORDER}:\r\n1 of Bamboo Wireless Keyboard [ASIN: B0C7K2M9QX]\r\n\r\n"
        "------------- Message: -------------\r\n\r\n"
        f"{text}\r\n\r\n"
        "------------- End message -------------\r\n\r\n"
        "Copyright 2026 Amazon.com, Inc. or its affiliates. All rights reserved.\r\n"
    ).encode()


def test_the_whole_round_trip_buyer_mail_reply_rejection_reply_failed(mailbox_user, smtp_sink):
    """Buyer mail in (Dovecot) → ticket → agent reply → SMTP → Amazon's rejection notice in the
    mailbox → the reply is FAILED with Amazon's reason; the agent can send it again."""
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    replies_send_due()
    message_id = parsed(smtp_sink.wait_for(1)[0].raw)["Message-ID"].strip("<>")
    ticket.refresh_from_db()
    assert ticket.response_due_at is None

    mailbox_user.server.append(mailbox_user.username, rejection_notice(message_id))
    code, summary = poll("--force")

    assert (code, summary["recorded"]) == (0, 1)
    sent.refresh_from_db()
    ticket.refresh_from_db()
    assert sent.delivery_status == DeliveryStatus.FAILED
    assert sent.delivery_error.startswith("Amazon did not deliver this reply: ")
    assert "opt out" in sent.delivery_error
    assert ticket.response_due_at is not None and ticket.status == "OPEN"
    activity = MailboxActivity.objects.get(kind="delivery_failure")
    assert activity.matched_message_id == sent.pk
    view = client.get(f"/api/v1/tickets/{ticket.id}/").json()
    shown = next(m for m in view["messages"] if m["id"] == sent.pk)["delivery"]
    assert (shown["status"], shown["error"]) == ("FAILED", sent.delivery_error)
    assert client.post(f"/api/v1/tickets/{ticket.id}/messages/{sent.id}/retry/").status_code == 200
    assert replies_send_due().sent == 1
    assert len(smtp_sink.wait_for(2)) == 2


def test_a_dsn_bounce_fails_the_reply_it_returns(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    replies_send_due()
    sent.refresh_from_db()

    mailbox_user.server.append(mailbox_user.username, dsn_bounce(sent.delivery_ref))
    poll("--force")

    sent.refresh_from_db()
    assert sent.delivery_status == DeliveryStatus.FAILED
    assert "550 5.1.1 Recipient address rejected" in sent.delivery_error


def test_a_notice_without_the_message_id_is_matched_by_relay_address_and_time(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    sent = reply(client, ticket, "Your parcel left today.")
    replies_send_due()
    notice = rejection_notice("someone-else@example.invalid", in_reply_to=False).replace(
        b"Message-ID: <someone-else@example.invalid>\r\n\r\n", b"\r\n"
    )
    notice = notice.replace(
        b"Date: Tue, 01 Dec 2026 10:20:00 +0000", _date_header(timezone.now() + timedelta(minutes=5))
    )

    mailbox_user.server.append(mailbox_user.username, notice)
    poll("--force")

    sent.refresh_from_db()
    assert sent.delivery_status == DeliveryStatus.FAILED


def _date_header(moment) -> bytes:
    return f"Date: {format_datetime(moment)}".encode()


def test_an_unmatched_notice_is_kept_on_the_connection(mailbox_user, smtp_sink):
    connection, _, _, _ = buyer_ticket(mailbox_user, smtp_sink)
    other_relay = "zzzzzzzzzzzzzzzz@marketplace.amazon.com"
    notice = rejection_notice("unknown-reply@acme-store.example").replace(RELAY.encode(), other_relay.encode())

    mailbox_user.server.append(mailbox_user.username, notice)
    code, summary = poll("--force")

    assert (code, summary["recorded"]) == (0, 1)
    activity = MailboxActivity.objects.get(connection=connection)
    assert (activity.kind, activity.matched_message_id) == ("delivery_failure", None)
    assert activity.refers_to_message_id == "unknown-reply@acme-store.example"


def test_a_reply_written_in_seller_central_joins_the_ticket_and_stops_the_clock(mailbox_user, smtp_sink):
    _, _, ticket, client = buyer_ticket(mailbox_user, smtp_sink)
    assert ticket.response_due_at is not None
    text = "Hello, we have sent a replacement today. Best regards, Acme Store"

    mailbox_user.server.append(mailbox_user.username, seller_central_copy(text))
    poll("--force")
    mailbox_user.server.append(mailbox_user.username, seller_central_copy(text))  # the same copy twice
    poll("--force")

    ticket.refresh_from_db()
    assert ticket.response_due_at is None
    copy = TicketMessage.objects.get(ticket=ticket, direction=Direction.OUTBOUND)
    assert (copy.origin, copy.delivery_status, copy.body) == ("seller_central", DeliveryStatus.SENT, text)
    view = client.get(f"/api/v1/tickets/{ticket.id}/").json()
    assert [(m["direction"], m["origin"]) for m in view["messages"]] == [
        ("INBOUND", "buyer"),
        ("OUTBOUND", "seller_central"),
    ]
    assert replies_send_due().claimed == 0  # a copy is never sent again
    assert smtp_sink.messages == []


def test_the_smtp_password_never_reaches_logs_errors_the_database_or_the_api(mailbox_user, smtp_sink_factory, caplog):
    good, wrong = "Pw-7c1e-d29b-GOOD", "Pw-41aa-0f3e-WRONG"
    sink = smtp_sink_factory(users={SELLER_LOGIN: good})
    caplog.set_level(logging.DEBUG)
    connection, _, ticket, client = buyer_ticket(mailbox_user, sink, password=good)
    reply(client, ticket, "Your parcel left today.")
    replies_send_due()  # a login and a send with the right password
    answer = put_mailbox(client, connection, mailbox_user, sink, password=wrong)  # a refused login
    sent = reply(client, ticket, "And the invoice follows.")
    replies_send_due()  # a send refused at AUTH with the wrong one
    sent.refresh_from_db()

    assert answer.json()["check"]["smtp"]["code"] == "smtp_auth_failed"
    assert sent.delivery_status == DeliveryStatus.FAILED
    seen = [
        caplog.text,
        answer.content.decode(),
        client.get(f"/api/v1/marketplaces/amazon/connections/{connection.id}/mailbox").content.decode(),
        client.get("/api/v1/marketplaces/amazon/status").content.decode(),
        client.get(f"/api/v1/tickets/{ticket.id}/").content.decode(),
        str(list(Mailbox.objects.values())),
        str(list(TicketMessage.objects.values())),
    ]
    for text in seen:
        assert good not in text and wrong not in text
