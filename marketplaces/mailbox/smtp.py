"""The SMTP client: send one reply, from the seller's approved address, through the seller's server.

Python's own `smtplib` is all this needs: one connection carries one message to one recipient, and
smtplib already speaks EHLO, STARTTLS, implicit TLS and AUTH. A third-party client would add
pooling, retries and templating that the caller does itself (it decides when to retry, from the
error's `retryable`), and would hide the one thing smtplib must be driven by hand for: telling
"the server refused the message" from "the message went out but the verdict never came back".

TLS is verified against the system's CA store, or `ca_file`; plain connections ("none") are for
loopback hosts only (the settings API refuses others, not this module). Errors are one narrow family
(`marketplaces.mailbox.errors`, SmtpError and below), each with a message safe to show a seller (it
names the host and the user, and quotes the server's answer, never the password).

Which error for what:
- SmtpUnreachable: unknown host, connection refused, timeout or connection lost at any point before
  the end of the message was sent (the server cannot have accepted a message it did not get whole).
- SmtpTlsError: a certificate that does not verify, STARTTLS not offered for "starttls", a failed
  handshake. `retryable`: a send is tried again later (a certificate may be renewed meanwhile); a
  settings check reports it to the seller as it is.
- SmtpAuthError: AUTH refused (5xx), no AUTH on offer while a user is configured, or 530
  "authentication required" at MAIL FROM.
- SmtpTemporaryError: a 4xx answer (greeting, AUTH, MAIL, RCPT, DATA, or the end of the data).
- SmtpRejected: a 5xx answer to MAIL, RCPT or DATA, or a non-ASCII address without SMTPUTF8.
- SmtpUncertain: the whole message was sent, then the connection dropped or timed out (or the server
  answered gibberish) before its verdict. Never resend it blindly.
- MailboxHostRefused (from `hosts.host_check`): a private host without the operator's leave.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from marketplaces.mailbox.errors import (
    MailboxError,
    MailboxUnreachable,
    SmtpAuthError,
    SmtpError,
    SmtpRejected,
    SmtpTemporaryError,
    SmtpTlsError,
    SmtpUncertain,
    SmtpUnreachable,
)
from marketplaces.mailbox.hosts import host_check
from marketplaces.mailbox.imap import NONE, STARTTLS, TLS, tls_context

# The errors are re-exported: a caller may import the client and what it raises from one place.
__all__ = [
    "NONE",
    "STARTTLS",
    "TLS",
    "SmtpAccepted",
    "SmtpAuthError",
    "SmtpError",
    "SmtpRejected",
    "SmtpSettings",
    "SmtpTemporaryError",
    "SmtpTlsError",
    "SmtpUncertain",
    "SmtpUnreachable",
    "smtp_check",
    "smtp_send",
]

# The EHLO name. smtplib's default, socket.getfqdn(), is a reverse DNS lookup (slow, or stuck, on a
# host with poor DNS) and tells every seller's mail server the internal name of the KeyBuzz machine.
# A constant says who is calling and nothing more. Submission servers usually check the name only for
# clients that do not log in; should one insist on a dotted name, this is the one place to change.
EHLO_NAME = "keybuzz"
# AUTH mechanisms smtplib's login() knows (it tries them in this order).
LOGIN_MECHANISMS = ("CRAM-MD5", "PLAIN", "LOGIN")
ANSWER_CHARS = 200

# A line that starts with "." in the message gets one more (RFC 5321 §4.5.2), as smtplib's data()
# does it: after every LF, so that a stray "\n.\r\n" cannot end the data early at a lenient server.
_LEADING_DOT = re.compile(rb"(?m)^\.")
# Bare CR or LF: forbidden in SMTP data (RFC 5321 §2.3.8) and the stuff of "SMTP smuggling".
_BARE_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # TLS ("tls", implicit, port 465) | STARTTLS ("starttls", port 587) | NONE ("none", loopback)
    username: str  # empty: no AUTH (a loopback relay)
    password: str = field(repr=False)
    timeout: float = 30.0  # seconds, for the connection and for every read and write
    ca_file: str = ""  # empty: the system's CA store
    allow_private: bool = False  # loopback and private addresses (marketplaces.mailbox.hosts)

    def __post_init__(self) -> None:
        # Anything unknown would otherwise mean a plain connection, and the password in the clear.
        if self.security not in (TLS, STARTTLS, NONE):
            raise ValueError(f"security must be {TLS!r}, {STARTTLS!r} or {NONE!r}, not {self.security!r}")

    @property
    def where(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SmtpAccepted:
    reply: str  # the server's answer to the end of the data, e.g. "250 2.0.0 Ok: queued as ABC"


def smtp_check(settings: SmtpSettings) -> None:
    """Connects, secures (STARTTLS or implicit TLS), EHLO, AUTH and QUIT, as a send will. Raises
    MailboxHostRefused or an SmtpError."""
    with _session(settings):
        pass


def smtp_send(settings: SmtpSettings, *, mail_from: str, recipient: str, message: bytes) -> SmtpAccepted:
    """Sends `message` (a complete RFC 5322 message, CRLF line ends) to `recipient` on one new
    connection. Returns the server's acceptance; raises MailboxHostRefused or an SmtpError (see the
    module docstring), SmtpUncertain when the message may or may not have been accepted."""
    for address in (mail_from, recipient):
        if "\r" in address or "\n" in address:  # would end the SMTP command early: never sent
            raise SmtpRejected(f"The address {address!r} is not valid (it contains a line break)")
    with _session(settings) as client:
        with _translated(settings):
            _envelope(client, settings, mail_from, recipient, message)
        return _data(client, settings, message)


# --- The session -------------------------------------------------------------------------------------


@contextmanager
def _session(s: SmtpSettings) -> Iterator[smtplib.SMTP]:
    """A connected, secured, logged-in client; QUIT and closed on the way out, whatever happened."""
    try:
        host_check(s.host, s.port, allow_private=s.allow_private)
    except MailboxUnreachable:  # MailboxHostRefused goes through as it is
        raise SmtpUnreachable(f"Mail server host {s.host} not found") from None
    with _translated(s):
        client = _connect(s)
    try:
        with _translated(s):
            client.ehlo_or_helo_if_needed()
            if s.security == STARTTLS:
                _starttls(client, s)
            if s.username:
                _login(client, s)
        yield client
    finally:
        _quit(client)


def _connect(s: SmtpSettings) -> smtplib.SMTP:
    host = s.host.strip("[]")  # an IPv6 literal as typed in a URL
    # Connecting in the constructor lets smtplib use the host name for SNI and the certificate check;
    # on any failure there (refused, TLS, no greeting, greeting not 220) smtplib has closed the socket.
    try:
        if s.security == TLS:
            return smtplib.SMTP_SSL(
                host, s.port, local_hostname=EHLO_NAME, timeout=s.timeout, context=tls_context(s.ca_file)
            )
        return smtplib.SMTP(host, s.port, local_hostname=EHLO_NAME, timeout=s.timeout)
    except smtplib.SMTPConnectError as exc:  # a greeting other than 220, e.g. 421 busy, 554 no service
        raise _answer_error(s, exc.smtp_code, exc.smtp_error, "to the connection") from None


def _starttls(client: smtplib.SMTP, s: SmtpSettings) -> None:
    if not client.has_extn("starttls"):
        raise SmtpTlsError(f"The mail server {s.server} does not offer STARTTLS")
    try:
        client.starttls(context=tls_context(s.ca_file))
    except smtplib.SMTPResponseException as exc:  # 454 TLS not available, 501 …
        raise SmtpTlsError(
            f"The mail server {s.server} refused STARTTLS: {_answer(exc.smtp_code, exc.smtp_error, s)}"
        ) from None
    client.ehlo()  # RFC 3207: what the server offered before TLS no longer counts


def _login(client: smtplib.SMTP, s: SmtpSettings) -> None:
    if not client.has_extn("auth"):
        hint = " (it may offer it after STARTTLS: choose security starttls)" if client.has_extn("starttls") else ""
        raise SmtpAuthError(f"The mail server {s.server} does not offer AUTH, needed to log in as {s.username}{hint}")
    offered = client.esmtp_features["auth"].upper().split()
    try:
        if f"{s.username}{s.password}".isascii():
            if not set(offered) & set(LOGIN_MECHANISMS):
                raise SmtpAuthError(
                    f"The mail server {s.server} offers no AUTH mechanism KeyBuzz knows ({' '.join(offered)})"
                )
            client.login(s.username, s.password)
        else:
            _login_utf8(client, s, offered)
    except smtplib.SMTPAuthenticationError as exc:
        if 400 <= exc.smtp_code < 500:  # 454 temporary authentication failure
            raise SmtpTemporaryError(
                f"The mail server {s.where} could not check the login now: {_answer(exc.smtp_code, exc.smtp_error, s)}"
            ) from None
        raise SmtpAuthError(
            f"The mail server refused the login {s.where}: {_answer(exc.smtp_code, exc.smtp_error, s)}"
        ) from None


def _login_utf8(client: smtplib.SMTP, s: SmtpSettings, offered: list[str]) -> None:
    """AUTH PLAIN with UTF-8 credentials (RFC 4616): smtplib's login() encodes them as ASCII and fails."""
    if "PLAIN" not in offered:
        raise SmtpAuthError(
            f"The mail server {s.server} does not offer AUTH PLAIN, needed for a user name or password "
            f"with non-ASCII characters ({s.username})"
        )
    token = base64.b64encode(f"\0{s.username}\0{s.password}".encode()).decode("ascii")
    code, text = client.docmd("AUTH", f"PLAIN {token}")
    if code == 334:  # a server that wants the credentials after an empty challenge
        code, text = client.docmd(token)
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, text)


def _quit(client: smtplib.SMTP) -> None:
    """QUIT politely, close in any case; nothing said here changes what happened to the message."""
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):  # the connection is already gone, or the server is rude
        pass
    finally:
        client.close()


# --- The transaction ---------------------------------------------------------------------------------


def _envelope(client: smtplib.SMTP, s: SmtpSettings, mail_from: str, recipient: str, message: bytes) -> None:
    """MAIL FROM and RCPT TO, with SMTPUTF8 and 8BITMIME only when the message needs them and the
    server offers them."""
    options: list[str] = []
    if not message.isascii() and client.has_extn("8bitmime"):
        # Without 8BITMIME on offer the bytes go anyway: nearly every server takes them, and one that
        # does not says so at the end of the data (SmtpRejected), before anything was delivered.
        options.append("BODY=8BITMIME")
    utf8_addresses = not f"{mail_from}{recipient}".isascii()
    utf8_headers = not message.split(b"\r\n\r\n", 1)[0].isascii()  # RFC 6532 headers need SMTPUTF8 too
    if (utf8_addresses or utf8_headers) and client.has_extn("smtputf8"):
        options.append("SMTPUTF8")  # smtplib then sends the commands in UTF-8
    elif utf8_addresses:
        raise SmtpRejected(
            f"The mail server {s.server} does not take non-ASCII addresses (no SMTPUTF8): {mail_from} → {recipient}"
        )
    code, text = client.mail(mail_from, options)
    if code == 530:  # "authentication required": a login problem, not a refused sender
        raise SmtpAuthError(f"The mail server {s.where} requires a login: {_answer(code, text, s)}")
    if not 200 <= code < 300:
        raise _answer_error(s, code, text, f"to the sender {mail_from}")
    code, text = client.rcpt(recipient)
    if 500 <= code < 600:
        raise SmtpRejected(f"The mail server {s.server} refused the recipient {recipient}: {_answer(code, text, s)}")
    if not 200 <= code < 300:
        raise _answer_error(s, code, text, f"to the recipient {recipient}")


def _data(client: smtplib.SMTP, s: SmtpSettings, message: bytes) -> SmtpAccepted:
    """smtplib's data() in three steps with three outcomes, which data() would all report alike:
    1. DATA → 354, else the answer's error;
    2. the message, dot-stuffed and ended by CRLF.CRLF, in one sendall(): if that fails, the end of
       the data never left, so the server cannot have accepted anything → SmtpUnreachable;
    3. the server's verdict: if it does not come (connection lost, timeout, gibberish), the message
       may or may not have been accepted → SmtpUncertain."""
    with _translated(s):
        code, text = client.docmd("DATA")
        if code != 354:
            raise _answer_error(s, code, text, "to DATA")
    # A CRLF message goes byte for byte; only bare CR or LF (invalid anyway) are made CRLF.
    data = _LEADING_DOT.sub(b"..", _BARE_EOL.sub(b"\r\n", message))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    with _translated(s, while_="while sending the message"):
        client.send(data + b".\r\n")
    try:
        code, text = client.getreply()
    except (OSError, smtplib.SMTPException) as exc:  # SMTPServerDisconnected (timeouts too), line too long
        raise SmtpUncertain(
            f"The mail server {s.server} got the whole message but the connection ended before its answer "
            f"({_cause(exc, s)}): it may or may not have been accepted; check before sending it again"
        ) from None
    if 200 <= code < 300:
        return SmtpAccepted(reply=_answer(code, text, s))
    if 400 <= code < 600:
        raise _answer_error(s, code, text, "to the message")
    raise SmtpUncertain(
        f"The mail server {s.server} answered the message with something unexpected ({_answer(code, text, s)}): "
        "it may or may not have been accepted; check before sending it again"
    )


# --- Errors ------------------------------------------------------------------------------------------


def _answer(code: int, text: bytes | str, s: SmtpSettings) -> str:
    """`451 4.3.0 Try again later`: one line, at most ANSWER_CHARS, never the password (a server may echo)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    answer = " ".join(f"{code} {text}".split()) if code > 0 else " ".join(text.split())
    if s.password:
        answer = answer.replace(s.password, "***")
    return answer[:ANSWER_CHARS]


def _answer_error(s: SmtpSettings, code: int, text: bytes | str, what: str) -> MailboxError:
    """A server's answer that ends the transaction: 4xx temporary, 5xx permanent, anything else
    (a broken server) temporary, as nothing was sent yet."""
    answer = _answer(code, text, s)
    what = f" {what}" if what else ""
    if 500 <= code < 600:
        return SmtpRejected(f"The mail server {s.server} answered {answer}{what}")
    if 400 <= code < 500:
        return SmtpTemporaryError(f"The mail server {s.server} answered {answer}{what}")
    return SmtpTemporaryError(f"The mail server {s.server} answered something unexpected{what}: {answer or code}")


def _cause(exc: BaseException, s: SmtpSettings) -> str:
    """What went wrong on the wire, in words (smtplib wraps socket errors in SMTPServerDisconnected)."""
    if isinstance(exc, smtplib.SMTPResponseException):  # "500 Line too long."
        return _answer(exc.smtp_code, exc.smtp_error, s)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if exc.__context__ is None:  # end of file: the server hung up
            return "the server closed the connection"
        exc = exc.__context__
    if isinstance(exc, TimeoutError):
        return f"timed out after {s.timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())[:ANSWER_CHARS] or type(exc).__name__


@contextmanager
def _translated(s: SmtpSettings, *, while_: str = "") -> Iterator[None]:
    """smtplib's and the socket's exceptions → this module's errors (ours go through untouched)."""
    try:
        yield
    except MailboxError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise SmtpTlsError(
            f"The TLS certificate of the mail server {s.server} is not trusted: {exc.verify_message}"
        ) from None
    except ssl.SSLError as exc:
        raise SmtpTlsError(f"TLS failed with the mail server {s.server}: {exc.reason or exc}") from None
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, ssl.SSLError):  # an alert from the server, read as a lost connection
            raise SmtpTlsError(f"TLS failed with the mail server {s.server}: {exc.__context__.reason}") from None
        where = f" {while_}" if while_ else ""
        raise SmtpUnreachable(f"The mail server {s.server} stopped answering{where}: {_cause(exc, s)}") from None
    except smtplib.SMTPResponseException as exc:  # an EHLO/HELO refused, a line too long, …
        raise _answer_error(s, exc.smtp_code, exc.smtp_error, "") from None
    except smtplib.SMTPException as exc:  # smtplib's own complaints (an AUTH loop, …)
        raise SmtpTemporaryError(f"SMTP with the mail server {s.where} failed: {_cause(exc, s)}") from None
    except socket.gaierror:
        raise SmtpUnreachable(f"Mail server host {s.host} not found") from None
    except TimeoutError:
        raise SmtpUnreachable(f"The mail server {s.server} did not answer within {s.timeout:g}s") from None
    except OSError as exc:
        raise SmtpUnreachable(f"The mail server {s.server} is unreachable: {_cause(exc, s)}") from None
