"""Which mail servers a seller may point KeyBuzz at, and the IMAP cursor's text form."""

from __future__ import annotations

from datetime import date

import pytest

from marketplaces.mailbox.errors import MailboxHostRefused
from marketplaces.mailbox.hosts import host_check, is_loopback
from marketplaces.sources.imap import ImapCursor


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST", True), ("10.0.0.1", False), ("imap.gmail.com", False), ("localhost.evil.example", False)],
)  # fmt: skip
def test_loopback_is_told_by_name_or_address_without_dns(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.10", "169.254.169.254", "100.64.0.1", "fd00::1",
     "0.0.0.0", "224.0.0.1", "localhost"],
)  # fmt: skip
def test_internal_addresses_are_refused_unless_allowed(host):
    with pytest.raises(MailboxHostRefused, match="loopback or private network"):
        host_check(host, 993, allow_private=False)
    host_check(host, 993, allow_private=True)  # the operator's choice


def test_a_public_address_is_accepted():
    host_check("8.8.8.8", 993, allow_private=False)
    host_check("2001:4860:4860::8888", 993, allow_private=False)


def test_the_cursor_round_trips_and_anything_else_is_a_mailbox_never_read():
    cursor = ImapCursor(uidvalidity=1733140000, last_uid=4711, since=date(2026, 11, 18))
    assert str(cursor) == "imap:v1;uidvalidity=1733140000;uid=4711;since=2026-11-18"
    assert ImapCursor.parse(str(cursor)) == cursor
    for text in ["", "2026-12-02T10:00:00+00:00", "imap:v1;uid=abc", "imap:v1;since=2026-13-40", "imap:v2;uid=5"]:
        assert ImapCursor.parse(text) == ImapCursor()
