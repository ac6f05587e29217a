"""Reading a UID FETCH answer: the usual shape by the poller's own reader, anything else by
imapclient's parser, with the same mails either way."""

from __future__ import annotations

from typing import Any

import pytest

from marketplaces.mailbox.imap import fetch_answer, usual_fetch_answer

MAIL = b"From: a@b.example\r\nSubject: hi\r\n\r\nHello\r\n"
OTHER = b"From: c@d.example\r\n\r\nA line with ) and {12} in it\r\n"


def one(head: bytes, raw: bytes = MAIL) -> list[Any]:
    """`head` ends with `{}`: the size of `raw` goes there, as the server writes it."""
    return [(head.replace(b"{}", b"{%d}" % len(raw)), raw), b")"]


USUAL = {
    "dovecot's order": one(b'1 (UID 7 INTERNALDATE "03-Dec-2026 08:39:34 +0100" RFC822.SIZE 41 BODY[] {}'),
    "another order": one(b'1 (RFC822.SIZE 41 INTERNALDATE "03-Dec-2026 08:39:34 -0500" UID 7 BODY[] {}'),
    "lower case": one(b'1 (uid 7 internaldate " 3-Dec-2026 08:39:34 +0000" rfc822.size 41 body[] {}'),
    "no INTERNALDATE": one(b"1 (UID 7 RFC822.SIZE 41 BODY[] {}"),
    "no RFC822.SIZE": one(b'1 (UID 7 INTERNALDATE "03-Dec-2026 08:39:34 +0000" BODY[] {}'),
    "an unreadable INTERNALDATE": one(b'1 (UID 7 INTERNALDATE "yesterday" RFC822.SIZE 41 BODY[] {}'),
    "a size unlike the body's": one(b'1 (UID 7 INTERNALDATE "03-Dec-2026 08:39:34 +0000" RFC822.SIZE 99 BODY[] {}'),
    "two mails": [
        *one(b'4 (UID 7 INTERNALDATE "03-Dec-2026 08:39:34 +0000" RFC822.SIZE 41 BODY[] {}'),
        *one(b'5 (UID 9 INTERNALDATE "04-Dec-2026 09:00:00 +0000" RFC822.SIZE 53 BODY[] {}', OTHER),
    ],
}

UNUSUAL = {
    "nothing": [None],
    "BODY[] first": [
        (b"1 (UID 7 BODY[] {%d}" % len(MAIL), MAIL),
        b' INTERNALDATE "03-Dec-2026 08:39:34 +0000" RFC822.SIZE 41)',
    ],
    "an unsolicited FLAGS": [b"3 (FLAGS (\\Seen))", *one(b"1 (UID 7 RFC822.SIZE 41 BODY[] {}")],
    "a FLAGS with the mail": one(b"1 (UID 7 FLAGS (\\Seen) RFC822.SIZE 41 BODY[] {}"),
    "no UID": one(b"1 (RFC822.SIZE 41 BODY[] {}"),
    "a UID twice": [*one(b"1 (UID 7 BODY[] {}"), *one(b"2 (UID 7 BODY[] {}", OTHER)],
    "an item twice": one(b"1 (UID 7 RFC822.SIZE 41 RFC822.SIZE 42 BODY[] {}"),
    "an escaped quote in the date": one(b'1 (UID 7 INTERNALDATE "03-Dec-2026 \\" 08:39:34 +0000" BODY[] {}'),
}


@pytest.mark.parametrize("data", USUAL.values(), ids=USUAL.keys())
def test_a_usual_answer_reads_as_imapclient_reads_it(data):
    usual = usual_fetch_answer(data)
    assert usual is not None
    assert usual == fetch_answer(data)
    assert all(mail.raw in (MAIL, OTHER) for mail in usual.values())


def test_the_times_keep_their_offset():
    mail = usual_fetch_answer(USUAL["another order"])[7]
    assert mail.internal_date is not None and mail.internal_date.utcoffset().total_seconds() == -5 * 3600
    assert (mail.uid, mail.size) == (7, 41)


@pytest.mark.parametrize("data", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_any_other_answer_is_left_to_imapclient(data):
    assert usual_fetch_answer(data) is None


def test_imapclient_reads_an_answer_with_its_body_first():
    (mail,) = fetch_answer(UNUSUAL["BODY[] first"]).values()
    assert (mail.uid, mail.raw, mail.size) == (7, MAIL, 41)
    assert mail.internal_date is not None
