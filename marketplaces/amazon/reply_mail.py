"""An agent's reply as the e-mail Amazon's relay accepts: plain text, from the seller's approved
address, to the buyer's relay address, on the buyer's thread.

Pure: builds bytes, touches neither the database nor the network. What makes Amazon file the reply
on the right conversation is the recipient (the relay address with its `+…` case suffix) and the
threading headers (`In-Reply-To`/`References` = the buyer's Message-ID); the subject is the
buyer's, with `Re: ` in front.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|r|rv|sv|antw|odp)\s*:", re.I)
_LINE_BREAKS = re.compile(r"[\r\n]+")


@dataclass(frozen=True)
class ReplyFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ReplyTarget:
    """The buyer's message a reply answers: where it came from and how it is threaded."""

    relay_address: str  # with its +case suffix
    message_id: str  # without angle brackets; "" when the buyer's mail had none
    subject: str


def reply_message_id(*, reply_id: int, from_address: str, key: str) -> str:
    """The reply's Message-ID (without angle brackets): the same on every attempt, so a rejection
    notice about any attempt finds the reply; opaque (an HMAC of the reply id, not the id itself,
    which would tell buyers how many replies KeyBuzz has sent)."""
    digest = hmac.new(key.encode(), f"keybuzz-reply:{reply_id}".encode(), hashlib.sha256).hexdigest()[:32]
    domain = from_address.rpartition("@")[2] or "keybuzz.invalid"
    return f"kb.{digest}@{domain}"


def reply_subject(buyer_subject: str) -> str:
    subject = _LINE_BREAKS.sub(" ", buyer_subject).strip()
    if not subject:
        return "Re: your message"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def compose_reply(
    *,
    from_address: str,
    target: ReplyTarget,
    body: str,
    message_id: str,
    sent_at: datetime,
    files: tuple[ReplyFile, ...] = (),
) -> bytes:
    """The whole message, CRLF line ends, ready for SMTP."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = from_address
    mail["To"] = target.relay_address
    mail["Subject"] = reply_subject(target.subject)
    mail["Date"] = format_datetime(sent_at)
    mail["Message-ID"] = f"<{message_id}>"
    if target.message_id:
        mail["In-Reply-To"] = f"<{target.message_id}>"
        mail["References"] = f"<{target.message_id}>"
    # Quoted-printable keeps the text readable in the raw mail and every line under SMTP's 998 octets.
    mail.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        # Uploads of type text are UTF-8 (tickets.uploads checks it): say so, or readers assume ASCII.
        params = {"charset": "utf-8"} if maintype == "text" else {}
        mail.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.filename, params=params)
    return mail.as_bytes()
