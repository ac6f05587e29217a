"""The relay mailbox as a message source: a connection's mails, read over IMAP since its cursor.

The cursor is the folder's UIDVALIDITY, the last UID read and the backfill cutoff
(`imap:v1;uidvalidity=…;uid=…;since=YYYY-MM-DD`). A run reads at most `AMAZON_MAILBOX_BATCH` mails
above the last UID, received since the cutoff (mails older than `AMAZON_MAILBOX_BACKFILL_DAYS` when
the mailbox was first read are left alone and counted as `skipped_old`). A new UIDVALIDITY (the
folder was recreated) reads the folder again from its first UID: the unique constraints drop what
was already filed. Nothing is acknowledged at the server: the cursor commits with the messages.

Each mail is parsed as soon as it is fetched (`marketplaces.mailbox.relay`) and its attachments are
stored, so a batch holds no mail bytes, only a compact record per mail: memory stays flat whatever
the mailbox weighs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from keybuzz.secrets import SecretStoreError
from marketplaces.mailbox.errors import MailboxAuthError, MailboxError, MailboxHostRefused
from marketplaces.mailbox.imap import FetchedMail, ImapReader, ImapSettings
from marketplaces.mailbox.parse_pool import parse_all
from marketplaces.mailbox.passwords import MailboxPasswordMissing, mailbox_password_read
from marketplaces.mailbox.relay import RelayMail, UnreadableMail, strip_plus_suffix
from marketplaces.sources.base import (
    ConnectionSnapshot,
    FetchResult,
    MessageParseError,
    Notice,
    ParsedMessage,
    SourceError,
)
from tickets.attachments import StorageUnavailable, StoredFile, attachment_store

CURSOR_PREFIX = "imap:v1"
PARSE_CHUNK, PARSE_CHUNK_BYTES = 50, 16 * 1024 * 1024  # mails handed to the parsing processes at once
QUARANTINE_HEAD_BYTES = 64 * 1024
# A Date header this far after the server received the mail is a wrong clock (or a forged date): the
# receipt time is the send time then. (A Date long before it is normal: a mail moved into the folder
# later keeps its Date.)
MAX_CLOCK_SKEW = timedelta(days=1)  # what the quarantine keeps of an unreadable mail, for a human to look at


class MailboxSourceError(SourceError):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class MailboxNeedsAttention(MailboxSourceError):
    """A refused login or a missing password: retried rarely, until the seller fixes the settings."""

    needs_attention = True


@dataclass(frozen=True)
class ImapCursor:
    uidvalidity: int = 0
    last_uid: int = 0
    since: date | None = None

    @classmethod
    def parse(cls, text: str) -> ImapCursor:
        """Anything but our own format (empty, the mock's cursor) is a mailbox never read."""
        if not text.startswith(CURSOR_PREFIX + ";"):
            return cls()
        parts = dict(item.split("=", 1) for item in text.split(";")[1:] if "=" in item)
        try:
            since = date.fromisoformat(parts["since"]) if parts.get("since") else None
            return cls(uidvalidity=int(parts.get("uidvalidity", 0)), last_uid=int(parts.get("uid", 0)), since=since)
        except ValueError:
            return cls()

    def __str__(self) -> str:
        since = self.since.isoformat() if self.since else ""
        return f"{CURSOR_PREFIX};uidvalidity={self.uidvalidity};uid={self.last_uid};since={since}"


def thread_key(mail: RelayMail) -> str:
    """One buyer's conversation about one order: the relay address without its +suffix (stable
    per buyer and seller) and the order id; without an order id, the relay address alone."""
    return thread_keys(mail.thread_relay or mail.from_address, mail.order_id)[0]


def thread_keys(relay_address: str, order_id: str = "") -> tuple[str, str]:
    """(the thread key of this relay address and order, the key of all the buyer's threads)."""
    prefix = f"amazon:{strip_plus_suffix(relay_address)}"
    return (f"{prefix}:{order_id}" if order_id else prefix), prefix


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class ImapSource:
    needs_access_token = False

    def fetch(self, connection: ConnectionSnapshot, *, access_token: str | None) -> FetchResult:
        mailbox = connection.mailbox
        if mailbox is None:
            raise MailboxSourceError("No mailbox configured for this connection", code="mailbox_not_configured")
        try:
            password = mailbox_password_read(mailbox.secret_ref)
        except MailboxPasswordMissing as exc:
            raise MailboxNeedsAttention(
                f"Mailbox password missing ({exc}): enter it again", code="mailbox_password_missing"
            ) from None
        except SecretStoreError as exc:
            raise MailboxSourceError(f"Mailbox password unreadable: {exc}", code="secret_store_unavailable") from None
        imap = ImapSettings(
            host=mailbox.host,
            port=mailbox.port,
            security=mailbox.security,
            username=mailbox.username,
            password=password,
            folder=mailbox.folder,
            timeout=settings.AMAZON_MAILBOX_TIMEOUT,
            ca_file=settings.AMAZON_MAILBOX_CA_FILE,
            allow_private=settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS,
        )
        cursor = ImapCursor.parse(connection.cursor)
        try:
            with ImapReader(imap) as reader:
                return self._read(reader, connection, cursor)
        except (MailboxAuthError, MailboxHostRefused) as exc:
            raise MailboxNeedsAttention(str(exc), code=exc.code) from None
        except MailboxError as exc:
            raise MailboxSourceError(str(exc), code=exc.code) from None
        except StorageUnavailable as exc:
            # Nothing of this batch is filed and the cursor stays: the same mails are read again
            # on the next run, once the store answers.
            raise MailboxSourceError(exc.message, code=exc.code) from None

    def _read(self, reader: ImapReader, connection: ConnectionSnapshot, cursor: ImapCursor) -> FetchResult:
        skipped_old = 0
        first_read = cursor.since is None
        if first_read:
            cursor = ImapCursor(since=timezone.now().date() - timedelta(days=settings.AMAZON_MAILBOX_BACKFILL_DAYS))
        if cursor.uidvalidity != reader.folder.uidvalidity:
            cursor = replace(cursor, uidvalidity=reader.folder.uidvalidity, last_uid=0)
        found = reader.uids(after=cursor.last_uid, since=cursor.since)
        if first_read:
            # SINCE and BEFORE split the folder by received date: the mails not since the first day are
            # before it. Counted from the SELECT's EXISTS, not a SEARCH BEFORE: a round trip fewer per
            # new mailbox (a mail arriving in between can only make the count low, never negative).
            skipped_old = max(reader.folder.exists - len(found), 0)
        uids = found[: settings.AMAZON_MAILBOX_BATCH]
        raws: list[dict[str, Any]] = []
        pending: list[FetchedMail] = []  # parsed a chunk at a time: at most one chunk's bytes in memory
        pending_bytes = 0
        for item in reader.fetch(uids, max_mail_bytes=settings.AMAZON_MAILBOX_MAX_MAIL_BYTES):
            if isinstance(item, FetchedMail):
                pending.append(item)
                pending_bytes += len(item.raw)
                if len(pending) >= PARSE_CHUNK or pending_bytes >= PARSE_CHUNK_BYTES:
                    raws += self._records(connection, pending, uidvalidity=cursor.uidvalidity)
                    pending, pending_bytes = [], 0
            else:
                uid, size = item
                raws.append(
                    {
                        "id": f"uid-{cursor.uidvalidity}-{uid}",
                        "uid": uid,
                        "unreadable": f"mail too large ({size} bytes)",
                    }
                )
        raws += self._records(connection, pending, uidvalidity=cursor.uidvalidity)
        raws.sort(key=lambda record: int(record["uid"]))  # oldest first, a mail too large in its place
        next_cursor = replace(cursor, last_uid=uids[-1]) if uids else cursor
        return FetchResult(raw_messages=raws, next_cursor=str(next_cursor), skipped_old=skipped_old)

    def _records(
        self, connection: ConnectionSnapshot, fetched: list[FetchedMail], *, uidvalidity: int
    ) -> list[dict[str, Any]]:
        outcomes = parse_all([item.raw for item in fetched])
        return [
            self._record(connection, item, outcome, uidvalidity=uidvalidity)
            for item, outcome in zip(fetched, outcomes, strict=True)
        ]

    def _record(
        self,
        connection: ConnectionSnapshot,
        fetched: FetchedMail,
        mail: RelayMail | UnreadableMail,
        *,
        uidvalidity: int,
    ) -> dict[str, Any]:
        """The compact form of one mail: its parsed fields, and its files already in storage."""
        base: dict[str, Any] = {
            "uid": fetched.uid,
            "uidvalidity": uidvalidity,
            "internal_date": _iso(fetched.internal_date),
            "size": fetched.size,
        }
        if isinstance(mail, UnreadableMail):
            return {
                **base,
                "id": hashlib.sha256(fetched.raw).hexdigest(),
                "unreadable": str(mail),
                "head": fetched.raw[:QUARANTINE_HEAD_BYTES].decode("latin-1"),
            }
        stored, skipped = [], []
        if mail.kind == "buyer_message":
            for attachment in mail.attachments:
                if attachment.size > settings.AMAZON_ATTACHMENT_MAX_BYTES:
                    skipped.append({"filename": attachment.filename, "size": attachment.size, "reason": "too large"})
                    continue
                kept = attachment_store(
                    tenant_id=connection.tenant_id,
                    data=attachment.data,
                    filename=attachment.filename,
                    content_type=attachment.content_type,
                )
                stored.append(kept.__dict__)
        return {
            **base,
            "id": mail.message_id or mail.fingerprint,
            "kind": mail.kind,
            "reason": mail.reason,
            "message_id": mail.message_id,
            "from": mail.from_address,
            "subject": mail.subject,
            "date": _iso(mail.sent_at),
            "buyer_name": mail.buyer_name,
            "relay_address": mail.relay_address,
            "thread_key": thread_key(mail),
            "order_id": mail.order_id,
            "marketplace": mail.marketplace_domain,
            "notification_type": mail.notification_type,
            "refers_to_message_id": mail.refers_to_message_id,
            "failure_reason": mail.failure_reason,
            "text": mail.text,
            "attachments": stored,
            "skipped_attachments": skipped,
        }

    def parse(self, raw: dict[str, Any]) -> ParsedMessage | Notice:
        if raw.get("unreadable"):
            raise MessageParseError(f"unreadable mail: {raw['unreadable']}")
        sent_at = datetime.fromisoformat(raw["date"]) if raw.get("date") else None
        received = datetime.fromisoformat(raw["internal_date"]) if raw.get("internal_date") else None
        if received and (sent_at is None or sent_at > received + MAX_CLOCK_SKEW):
            sent_at = received  # no Date, or one after the mail arrived: a wrong clock
        record = {key: value for key, value in raw.items() if key != "text"}  # the text is the body
        if raw["kind"] != "buyer_message":
            return Notice(
                external_id=raw["id"],
                kind=raw["kind"],
                reason=raw.get("failure_reason") or raw.get("reason", ""),
                sent_at=sent_at,
                sender=raw.get("from", ""),
                subject=raw.get("subject", ""),
                order_id=raw.get("order_id", ""),
                relay_address=raw.get("relay_address", ""),
                refers_to_message_id=raw.get("refers_to_message_id", ""),
                notification_type=raw.get("notification_type", ""),
                text=raw.get("text", ""),
                record=record,
            )
        if sent_at is None:
            raise MessageParseError("no Date header and no receipt time")
        return ParsedMessage(
            external_id=raw["id"],
            thread_key=raw["thread_key"],
            sent_at=sent_at,
            body=raw.get("text", ""),
            subject=raw.get("subject", ""),
            order_id=raw.get("order_id", ""),
            sender=raw.get("relay_address", ""),
            sender_name=raw.get("buyer_name", ""),
            attachments=tuple(StoredFile(**item) for item in raw.get("attachments", [])),
            record=record,
        )
