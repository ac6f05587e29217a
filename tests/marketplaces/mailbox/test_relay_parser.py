"""The relay-mail parser: every mail of the fixture corpus against its manifest entry, then targeted cases
(marketplaces, look-alike senders, attachments, quoted history in several languages) and hostile input, which
must parse or raise `UnreadableMail`, never anything else. Pure: no database."""

from __future__ import annotations

import hashlib
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplaces.mailbox.relay import (
    MARKETPLACE_DOMAINS,
    RelayMail,
    UnreadableMail,
    parse_relay_mail,
    strip_plus_suffix,
)

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "relay_mail"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
STRING_FIELDS = (
    "kind",
    "message_id",
    "buyer_name",
    "relay_address",
    "thread_relay",
    "order_id",
    "marketplace_domain",
    "subject",
    "refers_to_message_id",
    "notification_type",
)
RELAY = "k7w3m9x2q5pt@marketplace.amazon.com"
AMAZON_BODY = """Dear Seller,

You have received a message from an Amazon customer:

Order ID 111-2223334-4445556:
1 of Rain Jacket, Navy, M [ASIN: B0TESTTEST]

------------- Message: -------------

{words}

------------- End message -------------

Resolve case: https://sellercentral.amazon.com/messaging/resolve?caseId=TEST
Was this email helpful?

[commMgrTok:TESTTOKEN]
"""


def squash(text: str) -> str:
    """The manifest compares text after collapsing whitespace runs."""
    return " ".join(text.split())


def build_mail(
    body: str = "",
    *,
    sender: str = f'"Ana Lima - Amazon Marketplace" <{RELAY}>',
    subject: str = "Inquiry from Amazon customer Ana Lima (Order: 111-2223334-4445556)",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@acme-store.example"
    message["Subject"] = subject
    message["Date"] = "Tue, 03 Nov 2026 14:15:22 +0000"
    message["Message-ID"] = "<test.1@email.amazonses.com>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message


def buyer_says(words: str, **kwargs: Any) -> RelayMail:
    return parse_relay_mail(build_mail(AMAZON_BODY.format(words=words), **kwargs).as_bytes())


def parse_or_refuse(raw: bytes) -> RelayMail | None:
    """Hostile input may be refused, but only deliberately: never through the parser's last-resort net."""
    try:
        mail = parse_relay_mail(raw)
    except UnreadableMail as refused:
        assert refused.__cause__ is None, f"parser bug behind the refusal: {refused.__cause__!r}"
        assert str(refused) and "\n" not in str(refused)
        return None
    assert len(mail.text) <= 100_000
    assert mail.sent_at is None or mail.sent_at.tzinfo is not None
    assert all(a.filename and "/" not in a.filename and len(a.filename) <= 255 for a in mail.attachments)
    return mail


# --- the corpus --------------------------------------------------------------------------------------------


def test_manifest_covers_every_corpus_file() -> None:
    assert sorted(MANIFEST) == sorted(path.name for path in CORPUS.glob("*.eml"))


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_mail_matches_its_manifest_entry(name: str) -> None:
    expected, raw = MANIFEST[name], (CORPUS / name).read_bytes()
    if expected["kind"] == "unreadable":
        with pytest.raises(UnreadableMail) as refused:
            parse_relay_mail(raw)
        assert refused.value.__cause__ is None
        return
    mail = parse_relay_mail(raw)
    for key in STRING_FIELDS:
        assert getattr(mail, key) == (expected[key] or ""), key
    assert (mail.sent_at.isoformat() if mail.sent_at else None) == expected["sent_at"]
    for words in expected["text_contains"] or []:
        assert squash(words) in squash(mail.text)
    for words in expected["text_excludes"] or []:
        assert squash(words) not in squash(mail.text)
    attachments = [{"filename": a.filename, "content_type": a.content_type, "size": a.size} for a in mail.attachments]
    assert attachments == expected["attachments"]
    assert (expected["failure_reason_contains"] or "") in mail.failure_reason
    assert (mail.failure_reason != "") == (expected["kind"] == "delivery_failure")
    assert mail.fingerprint == hashlib.sha256(raw).hexdigest()
    assert mail.reason


# --- identity and addresses ----------------------------------------------------------------------------------


def test_a_mail_without_message_id_has_a_stable_fingerprint() -> None:
    raw = (CORPUS / "29-combe-fr-no-message-id.eml").read_bytes()
    first, again = parse_relay_mail(raw), parse_relay_mail(raw)
    assert first.message_id == ""
    assert first.fingerprint == again.fingerprint == hashlib.sha256(raw).hexdigest()
    assert parse_relay_mail(raw.replace(b"parapluie", b"parasol")).fingerprint != first.fingerprint


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("r7hx2n5kq9mb+A3F9KQ2ZL7M1XD@marketplace.amazon.de", "r7hx2n5kq9mb@marketplace.amazon.de"),
        ("r7hx2n5kq9mb@marketplace.amazon.de", "r7hx2n5kq9mb@marketplace.amazon.de"),
        ("  ABC+x+y@Marketplace.Amazon.CO.UK ", "abc@marketplace.amazon.co.uk"),
        ("no-reply-x7q2k9m4p1w8@marketplace.amazon.com", "no-reply-x7q2k9m4p1w8@marketplace.amazon.com"),
        ("abc+case", "abc"),
        ("", ""),
    ],
)
def test_strip_plus_suffix(address: str, expected: str) -> None:
    assert strip_plus_suffix(address) == expected


def test_marketplace_domains() -> None:
    expected = "com co.uk de fr it es co.jp ca com.mx com.au com.br com.tr com.be nl se pl ie in sg ae sa eg co.za"
    assert {f"amazon.{tld}" for tld in expected.split()} == MARKETPLACE_DOMAINS
    assert "amazon.cn" not in MARKETPLACE_DOMAINS


@pytest.mark.parametrize("domain", sorted(MARKETPLACE_DOMAINS))
def test_every_marketplace_relays_buyer_messages(domain: str) -> None:
    mail = buyer_says(
        "Where is my parcel?", sender=f'"Ana Lima - Amazon Marketplace" <Ab12cd34+CASE9@marketplace.{domain}>'
    )
    assert mail.kind == "buyer_message"
    assert mail.marketplace_domain == domain
    assert mail.buyer_name == "Ana Lima"
    assert mail.relay_address == f"Ab12cd34+CASE9@marketplace.{domain}"  # as written: replies go to it
    assert mail.thread_relay == f"ab12cd34@marketplace.{domain}"
    assert mail.order_id == "111-2223334-4445556"
    assert mail.text == "Where is my parcel?"


@pytest.mark.parametrize(
    "sender",
    [
        '"Ana Lima - Amazon Marketplace" <k7w3m9x2q5pt@marketplace.amazon.com.evil.example>',
        '"donotreply@amazon.com" <alerts@amazon-support.example>',
        "Amazon <k7w3m9x2q5pt@marketplace-amazon.com>",
        "Amazon <donotreply@amazon.com.evil.example>",
        "Amazon <donotreply@notamazon.com>",
        "Amazon <donotreply@amazon.cn>",
        "Amazon <k7w3m9x2q5pt@marketplace.amazon.cn>",
        "Amazon <k7w3m9x2q5pt@marketplace.amazon.example>",
    ],
)
def test_look_alike_senders_are_ignored_whatever_their_headers_claim(sender: str) -> None:
    headers = {"X-Space-Notification-Type": "A_Z_CLAIM_RESPONDENT_NOTIFY", "X-Marketplace-ID": "ATVPDKIKX0DER"}
    mail = buyer_says("Verify your bank details within 24 hours.", sender=sender, headers=headers)
    assert (mail.kind, mail.reason) == ("ignored", "not from an Amazon domain")
    assert (mail.relay_address, mail.order_id, mail.marketplace_domain, mail.notification_type) == ("", "", "", "")


def test_a_copy_from_donotreply_is_recognised_by_its_subject() -> None:
    mail = parse_relay_mail(
        build_mail(
            AMAZON_BODY.format(words="Hello Ana, a new jacket left today.").replace("Dear Seller,", f"To: {RELAY}"),
            sender="Amazon Seller Central <donotreply@amazon.fr>",
            subject="Votre e-mail à Ana Lima (Commande : 111-2223334-4445556)",
        ).as_bytes()
    )
    assert (mail.kind, mail.buyer_name, mail.relay_address) == ("seller_central_copy", "Ana Lima", RELAY)
    assert (mail.marketplace_domain, mail.text) == ("amazon.com", "Hello Ana, a new jacket left today.")


def test_a_plain_text_bounce_from_the_mailer_daemon_is_a_delivery_failure() -> None:
    body = (
        "Your message could not be delivered.\n\nFinal-Recipient: rfc822; abc123xyz@marketplace.amazon.fr\n"
        "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 no such user\n\n"
        "Message-ID: <kb-reply.1@acme-store.example>\nSubject: Re: Question (Commande : 402-1111111-2222222)\n"
    )
    sender = "Mail Delivery System <MAILER-DAEMON@mx.acme-store.example>"
    mail = parse_relay_mail(build_mail(body, sender=sender, subject="Undelivered Mail").as_bytes())
    assert mail.kind == "delivery_failure"
    assert (mail.relay_address, mail.marketplace_domain) == ("abc123xyz@marketplace.amazon.fr", "amazon.fr")
    assert (mail.refers_to_message_id, mail.order_id) == ("kb-reply.1@acme-store.example", "402-1111111-2222222")
    assert mail.failure_reason == "550 no such user (status 5.1.1)"


def test_an_amazon_notification_without_a_body_still_counts() -> None:
    sender, headers = "Amazon Payments <payments-messages@amazon.co.uk>", {"X-Space-Notification-Type": "REFUND_ISSUED"}
    mail = parse_relay_mail(
        build_mail("", sender=sender, subject="Refund for order 204-1187346-5520931", headers=headers).as_bytes()
    )
    assert (mail.kind, mail.notification_type, mail.text) == ("notification", "REFUND_ISSUED", "")
    assert mail.order_id == "204-1187346-5520931"


# --- the buyer's words ---------------------------------------------------------------------------------------


def test_a_body_without_markers_keeps_the_buyers_words() -> None:
    body = (
        "Hello, the zipper broke after two days.\nCan you send a new one?\n\nOrder ID 111-2223334-4445556:\n"
        "1 of Rain Jacket [ASIN: B0TESTTEST]\n\nResolve case: https://sellercentral.amazon.com/messaging/resolve?c=1\n"
        "(Select this link if no response is needed.)\n\nWas this email helpful?\n\n[commMgrTok:TESTTOKEN]\n"
    )
    mail = parse_relay_mail(build_mail(body, subject="Message from Amazon customer Ana Lima").as_bytes())
    assert mail.text == "Hello, the zipper broke after two days.\nCan you send a new one?"
    assert mail.order_id == "111-2223334-4445556"


def test_multipart_alternative_prefers_the_plain_text() -> None:
    message = build_mail(AMAZON_BODY.format(words="Plain words, please."))
    message.add_alternative(f"<p>{AMAZON_BODY.format(words='<b>HTML words</b>')}</p>", subtype="html")
    mail = parse_relay_mail(message.as_bytes())
    assert mail.text == "Plain words, please."


def test_an_html_only_mail_keeps_its_line_breaks_and_decodes_entities() -> None:
    html = "<p>------------- Message: -------------</p><div>Hi!<br>It&#39;s   broken.</div><p>------------- End message -------------</p>"
    message = build_mail()
    message.set_content(html, subtype="html")
    assert parse_relay_mail(message.as_bytes()).text == "Hi!\nIt's broken."


@pytest.mark.parametrize(
    "attribution",
    [
        "On Wed, Nov 4, 2026 at 10:02 AM Acme Store <shop@acme-store.example> wrote:",
        "On Wed, Nov 4, 2026 at 10:02 AM Acme Store <shop@acme-store.example>\nwrote:",
        "Am 04.11.2026 um 10:02 schrieb Acme Store <shop@acme-store.example>:",
        "Le mer. 4 nov. 2026 à 10:02, Acme Store <shop@acme-store.example> a écrit :",
        "Il giorno mer 4 nov 2026 alle ore 10:02 Acme Store <shop@acme-store.example> ha scritto:",
        "El mié, 4 nov 2026 a las 10:02, Acme Store (<shop@acme-store.example>) escribió:",
        "Em qua., 4 de nov. de 2026 às 10:02, Acme Store <shop@acme-store.example> escreveu:",
        "Op wo 4 nov 2026 om 10:02 schreef Acme Store <shop@acme-store.example>:",
        "W dniu 4.11.2026 o 10:02, Acme Store pisze:",
        "Den ons 4 nov. 2026 kl 10:02 skrev Acme Store <shop@acme-store.example>:",
        "4 Kas 2026 Çar, 10:02 tarihinde Acme Store <shop@acme-store.example> şunu yazd\u0131:",
        "2026年11月4日(水) 10:02 Acme Store <shop@acme-store.example>:",
        "2026/11/04 10:02、Acme Store のメッセージ:",
        "2026/11/04 10:02 Acme Store さんは書きました:",
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Message d'origine-----",
        "---------- Forwarded message ---------",
        "> Hello Ana, your jacket shipped.",
    ],
)
def test_quoted_history_is_cut_in_every_language(attribution: str) -> None:
    mail = buyer_says(f"Thanks, it arrived.\n\n{attribution}\nHello Ana, your jacket shipped.\nAcme Store")
    assert mail.text == "Thanks, it arrived."


@pytest.mark.parametrize(
    ("domain", "header_block"),
    [
        ("amazon.com", "From: Acme Store <shop@acme-store.example>\nSent: Wednesday, November 4, 2026 10:02\nTo: Ana"),
        ("amazon.de", "Von: Acme Store <shop@acme-store.example>\nGesendet: Mittwoch, 4. November 2026 10:02\nAn: Ana"),
    ],
)
def test_outlook_header_blocks_are_cut_by_the_reply_library(domain: str, header_block: str) -> None:
    sender = f'"Ana Lima - Amazon Marketplace" <k7w3m9x2q5pt@marketplace.{domain}>'
    mail = buyer_says(f"Thanks, it arrived.\n\n{header_block}\n\nHello Ana, your jacket shipped.", sender=sender)
    assert mail.text == "Thanks, it arrived."


def test_a_mail_that_is_all_quote_keeps_its_words() -> None:
    assert buyer_says("> one\n> two").text == "> one\n> two"


def test_words_that_only_look_like_an_attribution_are_kept() -> None:
    words = "On the box the courier wrote:\nFRAGILE"
    assert buyer_says(words).text == words


def test_the_text_is_capped() -> None:
    mail = buyer_says("Start. " + "x" * 300_000)
    assert len(mail.text) == 100_000
    assert mail.text.startswith("Start. xxx")


# --- attachments ---------------------------------------------------------------------------------------------


def test_a_large_attachment_survives() -> None:
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    message = build_mail(AMAZON_BODY.format(words="Photo attached."))
    message.add_attachment(payload, maintype="image", subtype="jpeg", filename="IMG_0001.jpg")
    mail = parse_relay_mail(message.as_bytes())
    assert [(a.filename, a.content_type, a.size) for a in mail.attachments] == [
        ("IMG_0001.jpg", "image/jpeg", 5 * 1024 * 1024)
    ]
    assert mail.attachments[0].data == payload


def raw_with_attachment(disposition: str, content_type: str = "application/pdf") -> bytes:
    return (
        f"From: {RELAY}\r\nSubject: Files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n"
        f"--b\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="..\\\\..\\\\Windows\\\\win.ini"', "win.ini"),
        ('attachment; filename="in\x07voice\x1b.pdf"', "invoice.pdf"),
        ('attachment; filename="photo\u202egpj.exe"', "photogpj.exe"),
        ('attachment; filename=".."', "attachment-1.pdf"),
        ("attachment", "attachment-1.pdf"),
        ('attachment; filename="=?utf-8?B?w6TDtsO8LnBkZg==?="', "äöü.pdf"),
        ("attachment; filename*=utf-8''Rechnung%20M%C3%BCller.pdf", "Rechnung Müller.pdf"),
    ],
)
def test_attachment_filenames_are_sanitised(disposition: str, expected: str) -> None:
    mail = parse_relay_mail(raw_with_attachment(disposition))
    assert [a.filename for a in mail.attachments] == [expected]
    assert mail.attachments[0].data.startswith(b"%PDF")


def test_a_long_filename_keeps_its_extension() -> None:
    (attachment,) = parse_relay_mail(raw_with_attachment(f'attachment; filename="{"a" * 300}.pdf"')).attachments
    assert len(attachment.filename) == 255
    assert attachment.filename.endswith("a.pdf")


# --- hostile input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 1000,
        b"From: x\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"From: a@marketplace.amazon.com\r\n\r\n",
        b"From: a@marketplace.amazon.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
        b"From: =?utf-8?B?////?= <a@marketplace.amazon.de>\r\nSubject: =?x-unknown?Q?=FF?=\r\n\r\nhi",
        b"From: J\xc3\xbcrgen \xff <a@marketplace.amazon.de>\r\nDate: Mon, 99 Foo 99999 99:99\r\n\r\n\xff\xfe",
        b"From: a@b\r\nContent-Type: text/plain; charset=rot13\r\n\r\nhello",
        b"From: a@b\r\nContent-Type: text/plain; charset=zlib_codec\r\n\r\nx\x9c",
        b"From: a@marketplace.amazon.com\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@c\r\n\r\ninner",
    ],
)
def test_garbage_parses_or_is_refused(raw: bytes) -> None:
    parse_or_refuse(raw)


def test_deep_mime_nesting_does_not_blow_up() -> None:
    depth = 2_000
    nested = "".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth))
    raw = f"From: {RELAY}\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n{nested}--b{depth}\r\n\r\nhi\r\n"
    parse_or_refuse(raw.encode())


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_parse_or_are_refused(raw: bytes) -> None:
    parse_or_refuse(raw)


HEADER_NAMES = [
    "From",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "X-Space-Notification-Type",
    "List-Id",
]
HEADER_VALUES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            RELAY,
            "Ana <ab+C@marketplace.amazon.co.jp>",
            "donotreply@amazon.de",
            "MAILER-DAEMON@mx.example",
            "=?utf-8?B?w6k=?= <x@marketplace.amazon.de>",
            "=?iso-2022-jp?B?GyRCJWEbKEI=?=",
            "multipart/mixed; boundary=b",
            "multipart/alternative; boundary=b",
            "multipart/report; report-type=delivery-status; boundary=b",
            "message/rfc822",
            "text/html; charset=unknown-8bit",
            "text/plain; charset=iso-2022-jp",
            "base64",
            "quoted-printable",
            "attachment; filename*=utf-8''%E2%80%AE..%2F%2Fx",
            "BBC_MESSAGE_CONFIRMATION_TO_MERCHANT",
            "Tue, 03 Nov 2026 14:15:22 -0000",
        ]
    ),
)
BODY_LINES = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            "",
            "--b",
            "--b--",
            "Content-Type: text/html; charset=utf-8",
            "Content-Type: message/delivery-status",
            "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename=../x",
            "------------- Message: -------------",
            "------------- End message -------------",
            "> quoted",
            "On Mon, 1 Jan 2026 at 10:00 X <x@y> wrote:",
            "Action: failed",
            "Final-Recipient: rfc822; abc@marketplace.amazon.de",
            "<p>hi<br>there &amp; <pre> x </pre>",
            "w6k=",
            "=C3=A9=",
            "Order ID 123-1234567-1234567:",
        ]
    ),
)


@st.composite
def raw_mails(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), HEADER_VALUES), max_size=8))
    lines = draw(st.lists(BODY_LINES, max_size=30))
    text = "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n" + "\r\n".join(lines)
    return text.encode("utf-8", errors="surrogatepass")


@settings(max_examples=200, derandomize=True, deadline=None)
@given(raw_mails())
def test_random_mails_parse_or_are_refused(raw: bytes) -> None:
    parse_or_refuse(raw)
