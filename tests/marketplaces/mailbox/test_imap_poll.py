"""`poll_amazon --once` reading a seller's relay mailbox on a real Dovecot: the corpus filed, threaded
and classified, nothing changed on the server, the cursor across runs and UIDVALIDITY changes, the
backfill window, bounded batches, and each kind of mailbox failure recorded and backed off."""

from __future__ import annotations

import email
import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from marketplaces.models import (
    ExternalMessage,
    Mailbox,
    MailboxActivity,
    MarketplaceConnection,
    QuarantinedMessage,
)
from marketplaces.sources.imap import ImapCursor
from tests.factories import make_connection
from tests.marketplaces.mailbox.helpers import corpus_mail, corpus_of, mailbox_connect, manifest, poll, relay_mail
from tests.net import free_port
from tickets.models import Attachment, Ticket, TicketMessage, TicketStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def poller_settings(settings):
    settings.AMAZON_POLL_WORKERS = 1  # the test's transaction is invisible to other threads
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""


def append_all(user, names):
    return [user.server.append(user.username, corpus_mail(name)) for name in names]


def same_text(text: str) -> str:
    return " ".join(text.split())


# --- The corpus ------------------------------------------------------------------------------------


def test_the_whole_corpus_is_filed_recorded_ignored_or_quarantined_and_the_mailbox_is_untouched(mailbox_user):
    server, user = mailbox_user.server, mailbox_user.username
    append_all(mailbox_user, manifest())
    flags_before = server.flags(user)
    connection, saved = mailbox_connect(mailbox_user)
    assert saved.check.ok

    code, summary = poll()

    assert code == 0
    kinds = [entry["kind"] for entry in manifest().values()]
    buyer = kinds.count("buyer_message")
    notices = sum(kinds.count(k) for k in ("seller_central_copy", "notification", "delivery_failure"))
    assert summary["fetched"] == len(kinds) == 46
    assert summary["new_messages"] == buyer == 31
    # Two follow-ups (21, 22) land on their first message's ticket.
    assert summary["new_tickets"] == Ticket.objects.count() == 29
    assert summary["recorded"] == notices == 10
    assert summary["ignored"] == kinds.count("ignored") == 4
    assert summary["quarantined"] == 1
    # Nothing read is dropped silently: every mail is somewhere.
    assert ExternalMessage.objects.count() + MailboxActivity.objects.count() + QuarantinedMessage.objects.count() == 46
    recorded = Counter(MailboxActivity.objects.values_list("kind", flat=True))
    assert recorded == {"seller_central_copy": 2, "notification": 3, "delivery_failure": 5, "ignored": 4}
    failure = MailboxActivity.objects.get(
        external_id=manifest()["38-com-rejected-sender-not-approved.eml"]["message_id"]
    )
    assert failure.refers_to_message_id == manifest()["38-com-rejected-sender-not-approved.eml"]["refers_to_message_id"]
    assert failure.order_id == "114-3941689-8772232"
    quarantined = QuarantinedMessage.objects.get()
    assert "unreadable mail" in quarantined.reason
    assert quarantined.raw["head"].startswith("Return-Path") or "Message-ID" in quarantined.raw["head"]

    # Read-only: no flag set (no \Seen), nothing moved or deleted.
    assert server.flags(user) == flags_before
    assert server.message_count(user) == 46

    code, again = poll("--force")
    assert (again["fetched"], again["new_messages"], again["recorded"], again["quarantined"]) == (0, 0, 0, 0)
    connection.refresh_from_db()
    cursor = ImapCursor.parse(connection.poll_cursor)
    assert cursor.uidvalidity == server.uidvalidity(user) and cursor.last_uid == 46


def test_a_buyer_message_becomes_a_ticket_with_the_buyers_words_only(mailbox_user):
    name = "01-com-en-inquiry.eml"
    expected = manifest()[name]
    append_all(mailbox_user, [name])
    connection, _ = mailbox_connect(mailbox_user)

    poll()

    ticket = Ticket.objects.get()
    assert ticket.connection_id == connection.id
    assert ticket.channel == "AMAZON" and ticket.status == TicketStatus.OPEN
    assert ticket.subject == expected["subject"]
    assert ticket.customer_name == expected["buyer_name"] == "Jennifer Ortiz"
    assert ticket.customer_ref == expected["relay_address"]
    assert ticket.order_id == expected["order_id"]
    assert ticket.thread_key == f"amazon:{expected['thread_relay']}:{expected['order_id']}"
    message = TicketMessage.objects.get()
    assert message.sent_at == datetime.fromisoformat(expected["sent_at"])
    body = same_text(message.body)
    for words in expected["text_contains"]:
        assert same_text(words) in body
    for noise in expected["text_excludes"]:
        assert same_text(noise) not in body
    stored = ExternalMessage.objects.get()
    assert stored.external_id == expected["message_id"]
    assert stored.raw["kind"] == "buyer_message" and "text" not in stored.raw  # the body is the text


@pytest.mark.parametrize("name", corpus_of("buyer_message"))
def test_every_corpus_buyer_message_is_parsed_as_the_manifest_says(mailbox_user, name):
    expected = manifest()[name]
    append_all(mailbox_user, [name])
    mailbox_connect(mailbox_user)

    poll()

    message = TicketMessage.objects.select_related("ticket").get()
    stored = ExternalMessage.objects.get()
    assert stored.external_id == (expected["message_id"] or hashlib.sha256(corpus_mail(name)).hexdigest())
    assert message.ticket.order_id == (expected["order_id"] or "")
    relay = expected["thread_relay"]
    assert message.ticket.thread_key == (
        f"amazon:{relay}:{expected['order_id']}" if expected["order_id"] else f"amazon:{relay}"
    )
    body = same_text(message.body)
    for words in expected["text_contains"]:
        assert same_text(words) in body
    for noise in expected["text_excludes"]:
        assert same_text(noise) not in body
    assert [(a.filename, a.content_type, a.size) for a in Attachment.objects.order_by("id")] == [
        (a["filename"], a["content_type"], a["size"]) for a in expected["attachments"]
    ]
    if expected["sent_at"]:
        assert message.sent_at == datetime.fromisoformat(expected["sent_at"])


def test_without_a_usable_date_header_the_servers_receipt_time_is_the_send_time(mailbox_user):
    received = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
    for name in ("30-ie-unparsable-date.eml", "31-in-missing-date.eml"):
        mailbox_user.server.append(mailbox_user.username, corpus_mail(name), internal_date=received)
    mailbox_connect(mailbox_user)

    poll()

    assert [m.sent_at for m in TicketMessage.objects.all()] == [received, received]


def test_a_follow_up_lands_on_its_ticket_and_reopens_it(mailbox_user):
    append_all(mailbox_user, ["01-com-en-inquiry.eml"])
    mailbox_connect(mailbox_user)
    poll()
    ticket = Ticket.objects.get()
    Ticket.objects.filter(pk=ticket.pk).update(status=TicketStatus.RESOLVED)

    append_all(mailbox_user, ["21-com-followup-re-quoted-history.eml"])
    code, summary = poll("--force")
    assert code == 0

    assert (summary["new_messages"], summary["new_tickets"]) == (1, 0)
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    follow_up = ticket.messages.order_by("sent_at").last()
    assert "I need it before November 12." not in follow_up.body  # the quoted history is cut


def test_the_plus_suffix_of_a_relay_address_does_not_split_the_conversation(mailbox_user):
    order = "305-0000001-0000001"
    for n, relay in enumerate(["abc123@marketplace.amazon.de", "abc123+case-7731@marketplace.amazon.de"]):
        mailbox_user.server.append(mailbox_user.username, relay_mail(n, relay=relay, order_id=order))
    mailbox_connect(mailbox_user)

    poll()

    ticket = Ticket.objects.get()
    assert ticket.thread_key == f"amazon:abc123@marketplace.amazon.de:{order}"
    assert ticket.messages.count() == 2


def test_one_buyer_with_two_orders_has_two_tickets_and_without_order_id_the_relay_alone_threads(mailbox_user):
    relay = "same-buyer@marketplace.amazon.com"
    mails = [
        relay_mail(1, relay=relay, order_id="111-0000001-0000001"),
        relay_mail(2, relay=relay, order_id="111-0000002-0000002"),
        corpus_mail("23-com-no-order-id.eml"),
    ]
    for raw in mails:
        mailbox_user.server.append(mailbox_user.username, raw)
    mailbox_connect(mailbox_user)

    poll()

    keys = set(Ticket.objects.values_list("thread_key", flat=True))
    no_order = manifest()["23-com-no-order-id.eml"]["thread_relay"]
    assert keys == {
        f"amazon:{relay}:111-0000001-0000001",
        f"amazon:{relay}:111-0000002-0000002",
        f"amazon:{no_order}",
    }


def test_the_same_mail_delivered_twice_is_filed_once(mailbox_user):
    append_all(mailbox_user, ["05-it-messaggio-8bit.eml", "05-it-messaggio-8bit.eml"])
    mailbox_connect(mailbox_user)

    code, summary = poll()
    assert code == 0

    assert summary["fetched"] == 2
    assert summary["new_messages"] == 1
    assert TicketMessage.objects.count() == 1


def test_buyers_photos_are_stored_once_and_listed_on_the_message(mailbox_user, settings):
    raw = corpus_mail("19-com-photo-attachments.eml")
    append_all(mailbox_user, ["19-com-photo-attachments.eml"])
    mailbox_connect(mailbox_user)

    poll()

    parts = [p for p in email.message_from_bytes(raw).walk() if p.get_filename()]
    stored = list(Attachment.objects.order_by("id"))
    assert [a.filename for a in stored] == [p.get_filename() for p in parts]
    message = TicketMessage.objects.get()
    for attachment, part in zip(stored, parts, strict=True):
        assert attachment.message_id == message.id and attachment.ticket_id == message.ticket_id
        data = part.get_payload(decode=True)
        assert attachment.sha256 == hashlib.sha256(data).hexdigest()
        with open(f"{settings.MEDIA_ROOT}/{attachment.storage_name}", "rb") as file:
            assert file.read() == data


# --- Which source reads which connection -----------------------------------------------------------


def test_a_mailbox_connection_is_read_over_imap_even_with_the_mock_on(mailbox_user, settings):
    settings.AMAZON_USE_MOCK = True
    append_all(mailbox_user, ["01-com-en-inquiry.eml"])
    with_mailbox, _ = mailbox_connect(mailbox_user)
    without = make_connection()

    code, summary = poll()
    assert code == 0

    assert summary["connections"] == 2
    assert ExternalMessage.objects.filter(connection=with_mailbox).count() == 1  # the relay mail, no mock
    assert ExternalMessage.objects.filter(connection=without).count() == settings.AMAZON_MOCK_MESSAGES_PER_POLL


# --- Cursor, backfill, batches ---------------------------------------------------------------------


def test_mails_older_than_the_backfill_window_are_counted_not_filed(mailbox_user, settings):
    settings.AMAZON_MAILBOX_BACKFILL_DAYS = 14
    old = timezone.now() - timedelta(days=30)
    for n in range(5):
        mailbox_user.server.append(mailbox_user.username, relay_mail(n), internal_date=old)
    for n in range(5, 8):
        mailbox_user.server.append(mailbox_user.username, relay_mail(n))
    mailbox_connect(mailbox_user)

    code, summary = poll()

    assert (summary["skipped_old"], summary["new_messages"], summary["new_tickets"]) == (5, 3, 3)
    # Later runs neither count them again nor file them.
    mailbox_user.server.append(mailbox_user.username, relay_mail(9))
    code, summary = poll("--force")
    assert code == 0
    assert (summary["skipped_old"], summary["new_messages"]) == (0, 1)


def test_a_new_uidvalidity_rescans_the_folder_and_files_only_what_is_new(mailbox_user):
    server, user = mailbox_user.server, mailbox_user.username
    for n in range(3):
        server.append(user, relay_mail(n))
    connection, _ = mailbox_connect(mailbox_user)
    poll()

    new_validity = server.reset_uidvalidity(user)
    server.append(user, relay_mail(3))
    code, summary = poll("--force")
    assert code == 0

    assert summary["fetched"] == 4  # the whole folder again
    assert summary["new_messages"] == 1 and ExternalMessage.objects.count() == 4
    assert TicketMessage.objects.count() == 4
    connection.refresh_from_db()
    assert ImapCursor.parse(connection.poll_cursor).uidvalidity == new_validity


def test_two_thousand_mails_are_filed_over_several_bounded_runs(mailbox_user, settings):
    settings.AMAZON_MAILBOX_BATCH = 500
    mailbox_user.server.bulk_append(mailbox_user.username, (relay_mail(n) for n in range(2000)))
    connection, _ = mailbox_connect(mailbox_user)

    fetched = []
    for _ in range(5):
        code, summary = poll("--force")
        assert code == 0 and summary["failures"] == 0
        fetched.append(summary["fetched"])

    assert fetched == [500, 500, 500, 500, 0]
    assert ExternalMessage.objects.count() == TicketMessage.objects.count() == Ticket.objects.count() == 2000
    connection.refresh_from_db()
    assert ImapCursor.parse(connection.poll_cursor).last_uid == 2000


def test_a_mail_too_large_to_read_is_quarantined_and_the_others_are_filed(mailbox_user, settings):
    settings.AMAZON_MAILBOX_MAX_MAIL_BYTES = 20_000
    server, user = mailbox_user.server, mailbox_user.username
    server.append(user, relay_mail(1))
    server.append(user, relay_mail(2, padding=50_000))
    server.append(user, relay_mail(3))
    mailbox_connect(mailbox_user)

    code, summary = poll()
    assert code == 0

    assert (summary["new_messages"], summary["quarantined"]) == (2, 1)
    assert "mail too large" in QuarantinedMessage.objects.get().reason


def test_small_big_and_too_large_mails_are_each_read_or_set_aside(mailbox_user, settings):
    # A limit above a small mail's share of a FETCH (FETCH_BYTES / FETCH_COUNT, 335 kB): the bigger
    # mails are found among those over the share, and read one by one.
    settings.AMAZON_MAILBOX_MAX_MAIL_BYTES = 600_000
    server, user = mailbox_user.server, mailbox_user.username
    server.append(user, relay_mail(1, padding=500_000))  # big: read alone
    server.append(user, relay_mail(2))
    server.append(user, relay_mail(3, padding=700_000))  # too large: quarantined unread
    server.append(user, relay_mail(4, padding=400_000))
    mailbox_connect(mailbox_user)

    code, summary = poll()
    assert code == 0

    assert (summary["new_messages"], summary["quarantined"]) == (3, 1)
    assert "mail too large" in QuarantinedMessage.objects.get().reason
    assert sorted(ExternalMessage.objects.values_list("raw__uid", flat=True)) == [1, 2, 4]


# --- Failures --------------------------------------------------------------------------------------


def _failed(connection: MarketplaceConnection) -> tuple[MarketplaceConnection, Mailbox]:
    connection.refresh_from_db()
    return connection, Mailbox.objects.get(connection=connection)


def test_a_refused_login_is_recorded_and_not_retried_every_run(mailbox_user, settings):
    connection, _ = mailbox_connect(mailbox_user, password="not-the-password")

    code, summary = poll()

    assert code == 1 and summary["failures"] == 1
    connection, mailbox = _failed(connection)
    assert "Mailbox login refused" in connection.last_error and mailbox_user.username in connection.last_error
    assert "not-the-password" not in connection.last_error
    assert mailbox.last_error_code == "mailbox_auth_failed"
    wait = (connection.next_poll_at - timezone.now()).total_seconds()
    assert wait > settings.AMAZON_POLL_BACKOFF_MAX_SECONDS - 60
    code, summary = poll()
    assert summary["connections"] == 0  # not due again


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("host down", "mailbox_unreachable", "unreachable"),
        ("folder missing", "mailbox_folder_missing", "not found"),
    ],
)
def test_other_failures_are_recorded_and_back_off(mailbox_user, settings, case, code, words):
    if case == "host down":
        connection, _ = mailbox_connect(mailbox_user, port=free_port())
    else:
        connection, _ = mailbox_connect(mailbox_user, folder="Amazon/Buyers")

    exit_code, summary = poll()

    assert exit_code == 1
    connection, mailbox = _failed(connection)
    assert words in connection.last_error and mailbox.last_error_code == code
    assert connection.consecutive_failures == 1
    wait = (connection.next_poll_at - timezone.now()).total_seconds()
    assert settings.AMAZON_POLL_BACKOFF_BASE_SECONDS - 60 < wait <= settings.AMAZON_POLL_BACKOFF_BASE_SECONDS

    # Fixed: the next poll works and clears the errors.
    if case == "folder missing":
        mailbox_user.server.create_folder(mailbox_user.username, "Amazon/Buyers")
    else:
        Mailbox.objects.filter(pk=mailbox.pk).update(imap_port=mailbox_user.server.port)
    exit_code, summary = poll("--force")
    assert summary["failures"] == 0
    assert exit_code == 0
    connection, mailbox = _failed(connection)
    assert (connection.last_error, mailbox.last_error, mailbox.last_error_code) == ("", "", "")


def test_an_untrusted_certificate_is_a_tls_error(mailbox_user_tls, settings):
    settings.AMAZON_MAILBOX_CA_FILE = ""
    server = mailbox_user_tls.server
    connection, saved = mailbox_connect(mailbox_user_tls, security="tls", port=server.tls_port, host="localhost")
    assert not saved.check.ok and saved.check.code == "mailbox_tls_error"

    code, summary = poll()
    assert code == 1 and summary["failures"] == 1

    connection, mailbox = _failed(connection)
    assert "certificate" in connection.last_error and mailbox.last_error_code == "mailbox_tls_error"


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_verified_against_the_configured_ca(mailbox_user_tls, mail_ca, settings, security):
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    server = mailbox_user_tls.server
    server.append(mailbox_user_tls.username, relay_mail(1))
    port = server.tls_port if security == "tls" else server.port
    _, saved = mailbox_connect(mailbox_user_tls, security=security, port=port, host="localhost")
    assert saved.check.ok, saved.check.message

    code, summary = poll()

    assert code == 0 and summary["new_messages"] == 1


def test_a_mail_server_on_an_internal_address_is_refused_at_poll_time_too(mailbox_user, settings):
    connection, saved = mailbox_connect(mailbox_user)  # saved while the operator allowed it
    assert saved.check.ok
    settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS = False

    code, summary = poll()
    assert code == 1 and summary["failures"] == 1

    connection, mailbox = _failed(connection)
    assert mailbox.last_error_code == "mailbox_host_not_allowed"
    assert "loopback or private network" in connection.last_error
    assert (connection.next_poll_at - timezone.now()).total_seconds() > settings.AMAZON_POLL_BACKOFF_MAX_SECONDS - 60


def test_a_date_header_after_the_receipt_time_gives_way_to_the_receipt_time(mailbox_user):
    received = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)
    server, user = mailbox_user.server, mailbox_user.username
    server.append(user, relay_mail(1, date="Mon, 01 Jan 2035 10:00:00 +0000"), internal_date=received)
    server.append(user, relay_mail(2, date="Sun, 29 Nov 2026 23:10:00 -0500"), internal_date=received)
    mailbox_connect(mailbox_user)

    code, summary = poll()

    assert code == 0 and summary["new_messages"] == 2  # filed, not quarantined for a date in 2035
    sent = dict(TicketMessage.objects.values_list("ticket__customer_ref", "sent_at"))
    assert sent["buyer000001@marketplace.amazon.com"] == received
    assert sent["buyer000002@marketplace.amazon.com"] == datetime(2026, 11, 30, 4, 10, tzinfo=UTC)  # its own Date
