"""The SMTP client (`marketplaces.mailbox.smtp`) against a real aiosmtpd sink: the exact bytes and
envelope delivered over STARTTLS, implicit TLS and plain loopback, AUTH (UTF-8 passwords too), and
every failure sorted into its error: login, TLS, unreachable, 4xx, 5xx. A tiny scripted server on
127.0.0.1 plays what aiosmtpd will not: silence or a hang-up after the data (SmtpUncertain), a
hang-up in the middle of it, SMTPUTF8, odd greetings."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from marketplaces.mailbox.errors import (
    MailboxError,
    MailboxHostRefused,
    SmtpAuthError,
    SmtpError,
    SmtpRejected,
    SmtpTemporaryError,
    SmtpTlsError,
    SmtpUncertain,
    SmtpUnreachable,
)
from marketplaces.mailbox.smtp import SmtpAccepted, SmtpSettings, smtp_check, smtp_send
from tests.mail_servers.smtp import SmtpSink
from tests.mail_servers.tls import CA
from tests.net import HOST, free_port

SELLER, PASSWORD = "seller@acme.example", "secret"
BUYER = "x7kq2mz9fw4lnpd@marketplace.amazon.fr"
MESSAGE = (
    b"From: Acme <seller@acme.example>\r\n"
    b"To: " + BUYER.encode() + b"\r\n"
    b"Subject: Re: Order 171-1234567-1234567\r\n"
    b"Message-ID: <reply-1@acme.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello,\r\n"
    b".\r\n"  # alone on its line: would end the data without dot-stuffing
    b"..two dots\r\n"
    b".leading dot\r\n"
    b"Your parcel left today.\r\n"
)


def settings_for(sink: SmtpSink, ca: CA | None, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": sink.host,
        "port": sink.port,
        "security": "tls" if sink.implicit_tls else "starttls" if sink.starttls else "none",
        "username": SELLER,
        "password": PASSWORD,
        "timeout": 5.0,
        "ca_file": str(ca.ca_path) if ca is not None else "",
        "allow_private": True,
    }
    return SmtpSettings(**(values | overrides))


def send(settings: SmtpSettings, message: bytes = MESSAGE, recipient: str = BUYER) -> SmtpAccepted:
    return smtp_send(settings, mail_from=SELLER, recipient=recipient, message=message)


# --- Delivery ------------------------------------------------------------------------------------------


def test_a_reply_goes_over_starttls_with_auth_byte_for_byte(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    accepted = send(settings_for(smtp_sink, mail_ca))

    assert accepted == SmtpAccepted(reply="250 OK: queued")
    [received] = smtp_sink.wait_for(1)
    # The sink records the data dot-unstuffed: lines starting with "." survived both ways.
    assert received.raw == MESSAGE
    assert received.mail_from == SELLER
    assert received.rcpt_tos == [BUYER]
    assert received.authenticated_as == SELLER
    assert received.tls is True
    assert received.mail_options == []  # 7-bit message: no BODY=8BITMIME


def test_a_message_without_a_final_line_break_gets_one(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    send(settings_for(smtp_sink, mail_ca), message=MESSAGE + b"-- \r\nAcme")

    assert smtp_sink.wait_for(1)[0].raw == MESSAGE + b"-- \r\nAcme\r\n"


def test_bare_line_feeds_become_crlf_so_a_lone_dot_cannot_end_the_data(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    send(settings_for(smtp_sink, mail_ca), message=MESSAGE + b"before\n.\nafter\r\n")

    assert smtp_sink.wait_for(1)[0].raw == MESSAGE + b"before\r\n.\r\nafter\r\n"


def test_an_8bit_message_is_announced_as_8bitmime(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    message = MESSAGE.replace(b"quoted-printable", b"8bit") + "Très bien, à bientôt\r\n".encode()

    send(settings_for(smtp_sink, mail_ca), message=message)

    [received] = smtp_sink.wait_for(1)
    assert received.raw == message
    assert received.mail_options == ["BODY=8BITMIME"]


def test_implicit_tls(smtp_sink_factory: Callable[..., SmtpSink], mail_ca: CA) -> None:
    sink = smtp_sink_factory(implicit_tls=True)

    send(settings_for(sink, mail_ca, security="tls"))

    [received] = sink.wait_for(1)
    assert (received.raw, received.authenticated_as, received.tls) == (MESSAGE, SELLER, True)


def test_plain_smtp_on_loopback(smtp_sink_factory: Callable[..., SmtpSink]) -> None:
    sink = smtp_sink_factory(tls=False)

    send(settings_for(sink, None, security="none"))

    [received] = sink.wait_for(1)
    assert (received.raw, received.authenticated_as, received.tls) == (MESSAGE, SELLER, False)


def test_a_non_ascii_address_or_header_goes_with_smtputf8_when_offered(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    recipient = "jérôme@exemple.fr"
    message = "From: Élodie <seller@acme.example>\r\nSubject: Commande\r\n\r\nBonjour\r\n".encode()

    send(settings_for(smtp_sink, mail_ca), message=message, recipient=recipient)

    [received] = smtp_sink.wait_for(1)
    assert (received.rcpt_tos, received.raw) == ([recipient], message)
    assert received.mail_options == ["BODY=8BITMIME", "SMTPUTF8"]


def test_a_non_ascii_recipient_without_smtputf8_is_refused_before_mail_from() -> None:
    with FakeSmtp(extensions=("8BITMIME",)) as server:
        with pytest.raises(SmtpRejected, match="no SMTPUTF8") as caught:
            smtp_send(server.settings(), mail_from=SELLER, recipient="jérôme@exemple.fr", message=MESSAGE)

    assert "jérôme@exemple.fr" in str(caught.value)
    assert [c.split()[0].upper() for c in server.commands] == [b"EHLO", b"QUIT"]


def test_an_unknown_security_is_refused_rather_than_sent_in_the_clear() -> None:
    with pytest.raises(ValueError, match="security"):
        SmtpSettings("127.0.0.1", 465, "ssl", SELLER, PASSWORD)


def test_a_line_break_in_an_address_is_refused_before_connecting() -> None:
    settings = SmtpSettings("127.0.0.1", free_port(), "none", SELLER, PASSWORD, allow_private=True)
    with pytest.raises(SmtpRejected, match="line break"):
        send(settings, recipient=f"{BUYER}\r\nRCPT TO:<victim@example.com>")


# --- Login -------------------------------------------------------------------------------------------


def test_check_logs_in(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    smtp_check(settings_for(smtp_sink, mail_ca))

    assert smtp_sink.auth_attempts == [(SELLER, True)]
    assert smtp_sink.messages == []


def test_a_wrong_password_is_an_auth_error_that_never_shows_the_password(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    settings = settings_for(smtp_sink, mail_ca, password="Wrong-Pw-5b2d")

    with pytest.raises(SmtpAuthError) as caught:
        smtp_check(settings)

    error = caught.value
    assert error.code == "smtp_auth_failed"
    assert error.retryable is False
    assert isinstance(error, MailboxError)
    assert f"{SELLER}@{smtp_sink.host}:{smtp_sink.port}" in str(error)
    assert "535" in str(error)
    assert "Wrong-Pw-5b2d" not in str(error)
    assert "Wrong-Pw-5b2d" not in repr(error)
    assert "Wrong-Pw-5b2d" not in repr(settings)
    with pytest.raises(SmtpAuthError):
        send(settings)
    assert smtp_sink.messages == []


def test_a_login_the_server_refuses_stops_the_send(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    smtp_sink.auth_fail_next()

    with pytest.raises(SmtpAuthError, match="refused the login"):
        send(settings_for(smtp_sink, mail_ca))
    assert smtp_sink.messages == []


@pytest.mark.parametrize("username", ["vendeur@acme.example", "josé@acme.example"])
def test_a_non_ascii_password_logs_in_with_auth_plain_in_utf8(
    smtp_sink_factory: Callable[..., SmtpSink], mail_ca: CA, username: str
) -> None:
    sink = smtp_sink_factory(users={username: "pässwörd"})
    settings = settings_for(sink, mail_ca, username=username, password="pässwörd")

    smtp_check(settings)
    send(settings)

    assert sink.wait_for(1)[0].authenticated_as == username
    with pytest.raises(SmtpAuthError) as caught:
        smtp_check(settings_for(sink, mail_ca, username=username, password="pässwört"))
    assert "pässwört" not in str(caught.value)


def test_no_login_where_the_server_requires_one_is_an_auth_error(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    with pytest.raises(SmtpAuthError, match="530"):
        send(settings_for(smtp_sink, mail_ca, username="", password=""))
    assert smtp_sink.messages == []


def test_auth_not_offered_in_the_clear_is_an_auth_error(smtp_sink: SmtpSink) -> None:
    # The sink offers AUTH only after STARTTLS; security "none" never starts TLS.
    with pytest.raises(SmtpAuthError, match=r"does not offer AUTH.*STARTTLS"):
        smtp_check(settings_for(smtp_sink, None, security="none"))


# --- TLS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_a_certificate_from_an_unknown_ca_is_a_tls_error(
    smtp_sink_factory: Callable[..., SmtpSink], implicit: bool
) -> None:
    sink = smtp_sink_factory(implicit_tls=implicit)

    # No ca_file: the system's store, which has never heard of the throwaway CA.
    with pytest.raises(SmtpTlsError, match="not trusted") as caught:
        send(settings_for(sink, None, security="tls" if implicit else "starttls"))
    assert caught.value.code == "smtp_tls_error"
    assert caught.value.retryable is True
    assert sink.auth_attempts == [] and sink.messages == []


def test_starttls_not_offered_is_a_tls_error(smtp_sink_factory: Callable[..., SmtpSink], mail_ca: CA) -> None:
    sink = smtp_sink_factory(tls=False)

    with pytest.raises(SmtpTlsError, match="does not offer STARTTLS"):
        smtp_check(settings_for(sink, mail_ca, security="starttls"))
    assert sink.auth_attempts == []  # the password never went in the clear


# --- Unreachable -------------------------------------------------------------------------------------


def test_a_closed_port_is_unreachable() -> None:
    settings = SmtpSettings(HOST, free_port(), "starttls", SELLER, PASSWORD, allow_private=True)

    with pytest.raises(SmtpUnreachable) as caught:
        send(settings)
    assert caught.value.code == "smtp_unreachable"
    assert caught.value.retryable is True
    assert f"{HOST}:{settings.port}" in str(caught.value)


def test_a_server_that_never_says_hello_times_out_quickly() -> None:
    # A listening socket nobody accepts on: the kernel completes the handshake, no greeting ever comes.
    with socket.create_server((HOST, 0)) as listener:
        settings = SmtpSettings(HOST, listener.getsockname()[1], "none", SELLER, PASSWORD, 0.5, allow_private=True)
        started = time.monotonic()
        with pytest.raises(SmtpUnreachable, match=re.escape("0.5s")):
            send(settings)
        assert time.monotonic() - started < 3


def test_an_unknown_host_is_unreachable() -> None:
    settings = SmtpSettings("smtp.keybuzz-test.invalid", 587, "starttls", SELLER, PASSWORD, timeout=5)

    with pytest.raises(SmtpUnreachable, match="not found"):
        smtp_check(settings)


def test_a_private_host_is_refused_unless_allowed(smtp_sink: SmtpSink, mail_ca: CA) -> None:
    with pytest.raises(MailboxHostRefused):
        smtp_check(settings_for(smtp_sink, mail_ca, allow_private=False))
    assert smtp_sink.auth_attempts == []


# --- The server's answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_a_4xx_answer_is_temporary_with_the_servers_text(smtp_sink: SmtpSink, mail_ca: CA, stage: str) -> None:
    smtp_sink.fail_next(451, "4.3.0 Try again  later", stage)  # type: ignore[arg-type]

    with pytest.raises(SmtpTemporaryError) as caught:
        send(settings_for(smtp_sink, mail_ca))

    assert caught.value.code == "smtp_temporary"
    assert caught.value.retryable is True
    assert "answered 451 4.3.0 Try again later" in str(caught.value)
    assert [r.stage for r in smtp_sink.rejections] == [stage]
    assert smtp_sink.messages == []


@pytest.mark.parametrize(
    ("stage", "code", "text", "expected"),
    [
        ("MAIL", 553, "5.7.1 Sender not approved", "answered 553 5.7.1 Sender not approved to the sender"),
        ("RCPT", 550, "5.1.1 No such user", f"refused the recipient {BUYER}: 550 5.1.1 No such user"),
        # The sink answers "DATA" after the data, as servers that check the content do.
        ("DATA", 554, "5.6.0 Message rejected", "answered 554 5.6.0 Message rejected to the message"),
    ],
)
def test_a_5xx_answer_is_a_rejection(
    smtp_sink: SmtpSink, mail_ca: CA, stage: str, code: int, text: str, expected: str
) -> None:
    smtp_sink.fail_next(code, text, stage)  # type: ignore[arg-type]

    with pytest.raises(SmtpRejected) as caught:
        send(settings_for(smtp_sink, mail_ca))

    assert caught.value.code == "smtp_rejected"
    assert caught.value.retryable is False
    assert expected in str(caught.value)
    assert smtp_sink.messages == []


def test_every_smtp_error_is_a_mailbox_error_with_a_code_and_a_verdict() -> None:
    family = [SmtpAuthError, SmtpUnreachable, SmtpTlsError, SmtpTemporaryError, SmtpRejected, SmtpUncertain]
    assert all(issubclass(cls, SmtpError) and issubclass(cls, MailboxError) for cls in family)
    verdicts = {cls.code: cls.retryable for cls in family}
    assert verdicts == {
        "smtp_auth_failed": False,
        "smtp_unreachable": True,
        "smtp_tls_error": True,
        "smtp_temporary": True,
        "smtp_rejected": False,
        "smtp_uncertain": False,
    }


# --- What only a scripted server does ------------------------------------------------------------------


class FakeSmtp:
    """A one-connection SMTP server on 127.0.0.1 that follows a script.

    It answers EHLO with `extensions`, MAIL/RCPT with 250 and DATA with `data_answer`, reads the data, then
    `after_data`: "answer" (`final`), "close" (hang up without a word), "hang" (say nothing until
    the test ends), or "close_early" (hang up after 64 KiB of data, unread data left behind)."""

    def __init__(
        self,
        *,
        after_data: str = "answer",
        extensions: tuple[str, ...] = ("8BITMIME",),
        greeting: bytes = b"220 fake ESMTP",
        data_answer: bytes = b"354 End data with <CR><LF>.<CR><LF>",
        final: bytes = b"250 2.0.0 Ok: queued as FAKE",
    ) -> None:
        self.after_data, self.extensions, self.greeting, self.final = after_data, extensions, greeting, final
        self.data_answer = data_answer
        self.commands: list[bytes] = []
        self.data = b""
        self.listener = socket.create_server((HOST, 0))
        if after_data == "close_early":
            # A small receive window, so the client is still sending when the server hangs up.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self.listener.getsockname()[1]
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake-smtp-{self.port}", daemon=True)

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {"timeout": 5.0, "allow_private": True} | overrides
        return SmtpSettings(HOST, self.port, "none", "", "", **values)

    def __enter__(self) -> FakeSmtp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(10)
        self.listener.close()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            reader = conn.makefile("rb")
            try:
                self._talk(conn, reader)
            except OSError:
                pass
            finally:
                reader.close()

    def _talk(self, conn: socket.socket, reader: Any) -> None:
        def say(*lines: bytes) -> None:
            conn.sendall(b"".join(line + b"\r\n" for line in lines))

        say(self.greeting)
        if not self.greeting.startswith(b"220"):
            return
        while line := reader.readline():
            command = line.rstrip(b"\r\n")
            self.commands.append(command)
            verb = command[:4].upper()
            if verb == b"EHLO":
                names = [b"fake", *(e.encode() for e in self.extensions)]
                say(*(b"250-" + n for n in names[:-1]), b"250 " + names[-1])
            elif verb == b"QUIT":
                say(b"221 Bye")
                return
            elif verb == b"DATA":
                say(self.data_answer)
                if not self.data_answer.startswith(b"354"):
                    continue
                if self.after_data == "close_early":
                    self.data = reader.read(65536)
                    return
                while not (self.data.endswith(b"\r\n.\r\n") or self.data == b".\r\n"):
                    chunk = reader.readline()
                    if not chunk:
                        return
                    self.data += chunk
                if self.after_data == "close":
                    return
                if self.after_data == "hang":
                    self._release.wait(10)
                    return
                say(self.final)
            else:
                say(b"250 OK")


def test_a_hang_up_after_the_whole_message_is_uncertain() -> None:
    with FakeSmtp(after_data="close") as server:
        with pytest.raises(SmtpUncertain) as caught:
            smtp_send(server.settings(), mail_from=SELLER, recipient=BUYER, message=MESSAGE)

    # The server had it all, dot-stuffed on the wire.
    assert server.data == MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert caught.value.code == "smtp_uncertain"
    assert caught.value.retryable is False
    assert "may or may not have been accepted" in str(caught.value)
    assert "closed the connection" in str(caught.value)


def test_silence_after_the_whole_message_is_uncertain() -> None:
    with FakeSmtp(after_data="hang") as server:
        started = time.monotonic()
        with pytest.raises(SmtpUncertain, match=re.escape("timed out after 0.5s")):
            smtp_send(server.settings(timeout=0.5), mail_from=SELLER, recipient=BUYER, message=MESSAGE)
        assert time.monotonic() - started < 3


def test_a_hang_up_in_the_middle_of_the_message_is_unreachable_not_uncertain() -> None:
    big = MESSAGE + b"x" * 998 + b"\r\n"
    big = big * (32 * 1024 * 1024 // len(big))  # far more than any socket buffers between the two

    with FakeSmtp(after_data="close_early") as server:
        with pytest.raises(SmtpUnreachable, match="while sending the message") as caught:
            smtp_send(server.settings(), mail_from=SELLER, recipient=BUYER, message=big)

    assert caught.value.retryable is True
    assert len(server.data) < len(big)


def test_gibberish_after_the_whole_message_is_uncertain() -> None:
    with FakeSmtp(final=b"what?") as server:
        with pytest.raises(SmtpUncertain, match="something unexpected"):
            smtp_send(server.settings(), mail_from=SELLER, recipient=BUYER, message=MESSAGE)


def test_a_refused_data_command_sends_nothing() -> None:
    with FakeSmtp(data_answer=b"554 5.3.4 Too many messages today") as server:
        with pytest.raises(SmtpRejected, match=re.escape("554 5.3.4 Too many messages today to DATA")):
            smtp_send(server.settings(), mail_from=SELLER, recipient=BUYER, message=MESSAGE)
    assert server.data == b""
    assert server.commands[-1].upper() == b"QUIT"


def test_a_4xx_answer_to_the_whole_message_is_temporary() -> None:
    with FakeSmtp(final=b"452 4.3.1 Insufficient system storage") as server:
        with pytest.raises(SmtpTemporaryError, match=re.escape("452 4.3.1 Insufficient system storage to the message")):
            smtp_send(server.settings(), mail_from=SELLER, recipient=BUYER, message=MESSAGE)


@pytest.mark.parametrize(
    ("greeting", "error"),
    [(b"421 4.3.2 Too busy, come back later", SmtpTemporaryError), (b"554 5.7.1 No SMTP service here", SmtpRejected)],
)
def test_a_greeting_other_than_220(greeting: bytes, error: type[SmtpError]) -> None:
    with FakeSmtp(greeting=greeting) as server:
        with pytest.raises(error, match=re.escape(greeting.decode())):
            smtp_check(server.settings())
