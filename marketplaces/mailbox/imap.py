"""The IMAP client (imapclient): read a seller's relay mailbox, never change it.

The folder is opened read-only (EXAMINE) and bodies are fetched with BODY.PEEK[], so no mail is
ever flagged \\Seen, moved or deleted: the mailbox stays the seller's, and KeyBuzz's progress lives
in its own cursor (UIDVALIDITY + last UID). TLS is verified against the system's CA store, or the
file in AMAZON_MAILBOX_CA_FILE. Plain connections are for loopback hosts only (the settings API
refuses others).

Errors are one narrow family (`marketplaces.mailbox.errors`), each with a message safe to show a
seller (it names the host and the user, never the password).
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response
from imapclient.util import to_unicode

from marketplaces.mailbox.errors import (
    MailboxAuthError,
    MailboxFolderMissing,
    MailboxProtocolError,
    MailboxTlsError,
    MailboxUnreachable,
)
from marketplaces.mailbox.hosts import host_check

TLS, STARTTLS, NONE = "tls", "starttls", "none"
# One FETCH brings at most this many bytes of mail (by RFC822.SIZE): memory stays bounded whatever
# the mails weigh.
FETCH_BYTES = 16 * 1024 * 1024
FETCH_COUNT = 50
BODY_ITEMS = ("BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE")
_FETCH_ITEM = re.compile(rb'(UID|RFC822\.SIZE|INTERNALDATE) (?:(\d{1,20})|"([^"\\\r\n]{0,100})")', re.I)
_USUAL_FETCH = re.compile(
    rb'\d{1,20} \((?P<items>(?:(?:UID|RFC822\.SIZE) \d{1,20} |INTERNALDATE "[^"\\\r\n]{0,100}" ){0,3})'
    rb"BODY\[\] \{(?P<literal>\d{1,20})\}",
    re.I,
)


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    timeout: float = 30.0
    ca_file: str = ""
    allow_private: bool = False  # loopback and private addresses (marketplaces.mailbox.hosts)

    @property
    def where(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    exists: int


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes
    internal_date: datetime | None
    size: int


def _server_text(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:200]


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


class ImapReader:
    """One session on one folder: `with ImapReader(settings) as reader: state = reader.folder …`."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self._client: IMAPClient | None = None
        self.folder = FolderState(uidvalidity=0, exists=0)

    def __enter__(self) -> ImapReader:
        self.folder = self._open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _open(self) -> FolderState:
        s = self.settings
        host_check(s.host, s.port, allow_private=s.allow_private)
        try:
            client = IMAPClient(
                s.host,
                port=s.port,
                ssl=s.security == TLS,
                ssl_context=tls_context(s.ca_file) if s.security == TLS else None,
                timeout=s.timeout,
            )
            client.normalise_times = False  # INTERNALDATE with its time zone, not naive local time
            self._client = client
            if s.security == STARTTLS:
                client.starttls(tls_context(s.ca_file))
            if f"{s.username}{s.password}".isascii():
                client.login(s.username, s.password)
            else:  # LOGIN only carries ASCII; SASL PLAIN carries UTF-8 (RFC 4616)
                client.plain_login(s.username, s.password)
        except LoginError as exc:
            self.close()
            raise MailboxAuthError(f"Mailbox login refused for {s.where}: {_server_text(exc)}") from None
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise MailboxTlsError(
                f"Mailbox TLS certificate of {s.host}:{s.port} not trusted: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            self.close()
            raise MailboxTlsError(f"Mailbox TLS error with {s.host}:{s.port}: {exc.reason or exc}") from None
        except TimeoutError:
            self.close()
            raise MailboxUnreachable(f"Mailbox {s.host}:{s.port} did not answer within {s.timeout:g}s") from None
        except socket.gaierror:
            self.close()
            raise MailboxUnreachable(f"Mailbox host {s.host} not found") from None
        except OSError as exc:
            self.close()
            raise MailboxUnreachable(f"Mailbox {s.host}:{s.port} unreachable: {exc.strerror or exc}") from None
        except IMAPClientError as exc:
            self.close()
            if s.security == STARTTLS and "STARTTLS" in str(exc).upper():
                raise MailboxTlsError(f"Mailbox {s.host}:{s.port} does not offer STARTTLS") from None
            raise MailboxProtocolError(f"Mailbox {s.where} refused the session: {_server_text(exc)}") from None
        try:
            answer = client.select_folder(s.folder, readonly=True)
        except IMAPClientError as exc:
            self.close()
            raise MailboxFolderMissing(
                f"Mailbox folder {s.folder!r} not found for {s.where}: {_server_text(exc)}"
            ) from None
        except OSError as exc:
            self.close()
            raise MailboxUnreachable(f"Mailbox {s.host}:{s.port} dropped the connection: {exc}") from None
        return FolderState(uidvalidity=int(answer.get(b"UIDVALIDITY", 0)), exists=int(answer.get(b"EXISTS", 0)))

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxProtocolError("Mailbox session is closed")
        return self._client

    def uids(self, *, after: int, since: date | None) -> list[int]:
        """UIDs above `after` (received on or after `since`), oldest first."""
        criteria: list[Any] = ["UID", f"{after + 1}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        found = self._call(lambda: self.client.search(criteria))
        # "n:*" also matches the highest UID when it is below n: keep only what is really new.
        return sorted(uid for uid in found if uid > after)

    def fetch(self, uids: list[int], *, max_mail_bytes: int) -> Iterator[FetchedMail | tuple[int, int]]:
        """The mails, oldest first within each size class, a few at a time; a mail over
        `max_mail_bytes` is not downloaded: its (uid, size) comes instead, for the caller to set aside.

        The size classes come from SEARCH … LARGER (tiny answers) rather than a FETCH of every
        mail's size: on the benchmark's 2,000 mails that saves a round trip per mailbox and 0.15 ms
        of response parsing per mail. One SEARCH finds the mails over a small mail's share of a
        FETCH; a second, among those only and only when there are some, the ones over the limit
        (a round trip fewer per mailbox in the usual case, where every mail is small). Small mails
        come FETCH_COUNT at a time, bigger ones one by one, so at most about FETCH_BYTES (or one
        mail) is in memory."""
        if not uids:
            return
        share = FETCH_BYTES // FETCH_COUNT
        over = set(self._larger(uids, min(share, max_mail_bytes)))
        if max_mail_bytes <= share:  # every mail over the share is over the limit too
            too_large = over
        else:
            too_large = set(self._larger(sorted(over), max_mail_bytes)) if over else set()
        big = over - too_large
        if too_large:
            sizes = self._call(lambda: self.client.fetch(sorted(too_large), ["RFC822.SIZE"]))
            for uid in sorted(too_large):
                yield uid, int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
        small = [uid for uid in uids if uid not in too_large and uid not in big]
        for start in range(0, len(small), FETCH_COUNT):
            yield from self._bodies(small[start : start + FETCH_COUNT])
        for uid in sorted(big):
            yield from self._bodies([uid])

    def _larger(self, uids: list[int], size: int) -> list[int]:
        return list(self._call(lambda: self.client.search(["UID", sequence_set(uids), "LARGER", size])))

    def _bodies(self, uids: list[int]) -> Iterator[FetchedMail]:
        answer = self._call(lambda: self._fetch_bodies(uids))
        for uid in uids:
            mail = answer.get(uid)
            if mail is not None:  # else expunged meanwhile
                yield mail

    def _fetch_bodies(self, uids: list[int]) -> dict[int, FetchedMail]:
        """The mails by UID: read by `usual_fetch_answer` when the answer has the usual shape, else
        by imapclient's parser (`fetch_answer`). The command, and its errors, are IMAPClient.fetch's
        own, step by step (imaplib's calls as it makes them); only the reading of the answer differs."""
        imap = self.client._imap
        tag = imap._command("UID", "FETCH", join_message_ids(uids), seq_to_parenstr_upper(list(BODY_ITEMS)))
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            raise IMAPClientError(f"fetch failed: {to_unicode(data[0])}")
        typ, data = imap._untagged_response(typ, data, "FETCH")
        usual = usual_fetch_answer(data)
        return usual if usual is not None else fetch_answer(data)

    def _call(self, operation: Any) -> Any:
        s = self.settings
        try:
            return operation()
        except TimeoutError:
            raise MailboxUnreachable(f"Mailbox {s.host}:{s.port} stopped answering (timeout {s.timeout:g}s)") from None
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise MailboxUnreachable(f"Mailbox {s.host}:{s.port} dropped the connection: {_server_text(exc)}") from None
        except IMAPClientError as exc:
            raise MailboxProtocolError(f"Mailbox {s.where} refused a command: {_server_text(exc)}") from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # closing a broken session: nothing more to learn from it
            try:
                client.shutdown()
            except Exception:  # noqa: S110  (already gone)
                pass


def fetch_answer(data: list[Any]) -> dict[int, FetchedMail]:
    """The mails of any UID FETCH answer (imaplib's list), read by imapclient's parser."""
    parsed: dict[int, Any] = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    mails: dict[int, FetchedMail] = {}
    for uid, found in parsed.items():
        raw = found.get(b"BODY[]") or b""
        mails[uid] = FetchedMail(
            uid=uid,
            raw=raw,
            internal_date=found.get(b"INTERNALDATE"),
            size=int(found.get(b"RFC822.SIZE", len(raw))),
        )
    return mails


def usual_fetch_answer(data: list[Any]) -> dict[int, FetchedMail] | None:
    """The mails of a UID FETCH answer of the usual shape (imaplib's list: for each mail, the line
    `<seq> (UID <n> INTERNALDATE "<date>" RFC822.SIZE <n> BODY[] {<n>}` in any order of its items,
    with the mail's bytes, then `)`); None for anything else (a server that puts BODY[] first, an
    unsolicited FLAGS, a UID seen twice…), which `fetch_answer` reads then, with imapclient's parser.

    Why not imapclient's parser every time: it lexes every byte of the answer outside the mails in
    Python, under the interpreter lock all the polling threads share. Measured on a FETCH of 20 of
    the benchmark's mails (benchmarks/imap_ingest.py) from its Dovecot: 1.1 ms there, 0.3 ms here
    (most of it imapclient's own reading of the dates, kept so that they read the same)."""
    mails: dict[int, FetchedMail] = {}
    answer = iter(data)
    for item in answer:
        if not (isinstance(item, tuple) and len(item) == 2 and next(answer, None) == b")"):
            return None
        head, raw = item
        found = _USUAL_FETCH.fullmatch(head) if isinstance(head, bytes) and isinstance(raw, bytes) else None
        if found is None or int(found["literal"]) != len(raw):
            return None
        values: dict[bytes, bytes] = {}
        for name, number, quoted in _FETCH_ITEM.findall(found["items"]):
            if name.upper() in values:  # an item twice
                return None
            values[name.upper()] = number or quoted
        uid = values.get(b"UID")
        if uid is None or int(uid) in mails:
            return None
        date = values.get(b"INTERNALDATE")
        size = values.get(b"RFC822.SIZE")
        mails[int(uid)] = FetchedMail(
            uid=int(uid),
            raw=raw,
            internal_date=_internal_date(date) if date is not None else None,
            size=int(size) if size is not None else len(raw),
        )
    return mails


def _internal_date(value: bytes) -> datetime | None:
    try:  # as imapclient reads it (with normalise_times off): unreadable is None
        return parse_to_datetime(value, normalise=False)
    except ValueError:
        return None


def sequence_set(uids: list[int]) -> str:
    """`[1, 2, 3, 7, 9, 10]` → `1:3,7,9:10` (IMAP's compact form of a set of UIDs)."""
    ranges: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in [*ordered[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if previous != start else str(start))
        if uid is not None:
            start = previous = uid
    return ",".join(ranges)


def mailbox_check(settings: ImapSettings) -> FolderState:
    """Logs in and opens the folder, as the poller will. Raises MailboxError."""
    with ImapReader(settings) as reader:
        return reader.folder
