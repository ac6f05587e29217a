"""A real SMTP server for the tests: an aiosmtpd sink on 127.0.0.1 that keeps what it accepts.

`start_smtp()` runs aiosmtpd's SMTP protocol in a background thread on a socket bound before the
server starts (port 0: no race for a "free" port). It speaks AUTH PLAIN/LOGIN against `users`,
STARTTLS (or implicit TLS, port-465 style) with a certificate from the throwaway CA, and records
every accepted message byte for byte. Scripted failures (`fail_next`, `auth_fail_next`) let a test
make the next transactions fail with 4xx or 5xx at MAIL, RCPT or DATA, or AUTH fail with 535.

AUTH is only refused without TLS (`auth_require_tls`) when STARTTLS is on offer, as real submission
servers do; a sink without TLS takes AUTH in the clear, for the code's security "none" on loopback.
"Authentication required" is enforced here at MAIL FROM rather than with aiosmtpd's `auth_required`,
which warns on every connection when AUTH may go in the clear.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.mail_servers.tls import CA
from tests.net import HOST

DEFAULT_USERS: Mapping[str, str] = MappingProxyType({"seller@acme.example": "secret"})
START_TIMEOUT = 10.0

Stage = Literal["MAIL", "RCPT", "DATA"]


class _DropLoginDataWarning(logging.Filter):
    """aiosmtpd logs "Session.login_data is deprecated" on every successful AUTH, from its own code;
    that line would show up in every failing test's captured log and mean nothing there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataWarning())


@dataclass
class Received:
    """One accepted message: the envelope, the DATA bytes (CRLF line ends, dot-unstuffed) and who sent it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: tuple[str, int]
    authenticated_as: str | None
    tls: bool
    mail_options: list[str] = field(default_factory=list)


@dataclass
class Rejection:
    """A scripted failure that fired: which stage, what was answered, for which envelope."""

    stage: Stage
    reply: str
    mail_from: str | None
    rcpt: str | None = None


@dataclass
class _Failure:
    stage: Stage
    reply: str
    remaining: int
    recipient: str | None


class _Handler:
    """aiosmtpd hooks; runs on the server's event loop, shares its records with the test thread."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    def _scripted(self, stage: Stage, recipient: str | None = None) -> str | None:
        with self.sink._lock:
            for failure in self.sink._failures:
                if failure.stage == stage and failure.remaining > 0:
                    if failure.recipient is not None and failure.recipient.lower() != (recipient or "").lower():
                        continue
                    failure.remaining -= 1
                    return failure.reply
        return None

    def _reject(self, stage: Stage, reply: str, envelope: Envelope, rcpt: str | None = None) -> str:
        with self.sink._changed:
            self.sink.rejections.append(Rejection(stage, reply, envelope.mail_from, rcpt))
            self.sink._changed.notify_all()
        return reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.sink.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        reply = self._scripted("MAIL")
        if reply is not None:
            return self._reject("MAIL", reply, envelope)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._scripted("RCPT", address)
        if reply is not None:
            return self._reject("RCPT", reply, envelope, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._scripted("DATA")
        if reply is not None:
            return self._reject("DATA", reply, envelope)
        peer = session.peer if isinstance(session.peer, tuple) else (str(session.peer), 0)
        message = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.original_content or b"",
            peer=(str(peer[0]), int(peer[1])),
            authenticated_as=session.auth_data if isinstance(session.auth_data, str) else None,
            tls=session.ssl is not None or self.sink.implicit_tls,
            mail_options=list(envelope.mail_options),
        )
        with self.sink._changed:
            self.sink.messages.append(message)
            self.sink._changed.notify_all()
        return "250 OK: queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """aiosmtpd's `authenticator`: LOGIN and PLAIN arrive as a LoginPassword."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        with self.sink._lock:
            # A scripted failure holds for the whole connection: clients such as smtplib retry with
            # the next mechanism (PLAIN, then LOGIN) and must not get in on the second try.
            forced = session in self.sink._doomed_sessions
            if not forced and self.sink._auth_failures > 0:
                self.sink._auth_failures -= 1
                self.sink._doomed_sessions.add(session)
                forced = True
            expected = self.sink.users.get(login)
            # compare_digest takes str only when ASCII: compare the UTF-8 bytes (non-ASCII passwords).
            ok = not forced and expected is not None and hmac.compare_digest(expected.encode(), password.encode())
            self.sink.auth_attempts.append((login, ok))
        # handled=False: aiosmtpd answers "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


class _BoundController(Controller):
    """aiosmtpd's threaded controller on a socket we bound ourselves (it only knows host:port)."""

    def __init__(self, handler: _Handler, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpSink:
    """A running sink. `messages` and `rejections` fill in as clients talk to it; read them after
    `wait_for()`. Scripted failures are consumed in the order they were added, per stage."""

    host = HOST

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        require_auth: bool,
        tls: CA | None,
        implicit_tls: bool,
        auth_require_tls: bool,
    ) -> None:
        self.users: dict[str, str] = dict(users)
        self.require_auth = require_auth
        self.implicit_tls = implicit_tls
        self.starttls = tls is not None and not implicit_tls
        self.auth_require_tls = auth_require_tls
        self.ca_path: Path | None = tls.ca_path if tls is not None else None
        self.messages: list[Received] = []
        self.rejections: list[Rejection] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._failures: list[_Failure] = []
        self._auth_failures = 0
        self._doomed_sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._controller: _BoundController | None = None
        self.port = 0

    def fail_next(
        self,
        code: int = 451,
        message: str = "Try again later",
        stage: Stage = "DATA",
        count: int = 1,
        *,
        recipient: str | None = None,
    ) -> None:
        """The next `count` commands at `stage` are answered `<code> <message>` instead of accepted.

        4xx is a temporary failure (the client should retry), 5xx a permanent one. At "RCPT",
        `recipient` limits the refusal to that address, so the others in the same message go through.
        A refused DATA is not recorded in `messages`; every refusal is recorded in `rejections`.
        The connection stays open whatever the code (a real server hangs up after a 421; smtplib
        closes its side on a 421 anyway).
        """
        if not 400 <= code <= 599:
            raise ValueError(f"a failure needs a 4xx or 5xx code, not {code}")
        if stage not in ("MAIL", "RCPT", "DATA"):
            raise ValueError(f"stage must be MAIL, RCPT or DATA, not {stage!r}")
        with self._lock:
            self._failures.append(_Failure(stage, f"{code} {message}", count, recipient))

    def auth_fail_next(self, count: int = 1) -> None:
        """On the next `count` connections that try AUTH, every attempt fails with 535, right
        credentials or not (whatever mechanisms the client falls back to on the same connection)."""
        with self._lock:
            self._auth_failures += count

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Waits until at least `n` messages were accepted; returns them all. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"SMTP sink on {self.host}:{self.port} got {len(self.messages)} of {n} messages in "
                        f"{timeout:.0f}s; rejections so far: {self.rejections!r}"
                    )
                self._changed.wait(left)
            return list(self.messages)

    def clear(self) -> None:
        """Forgets messages, rejections, auth attempts and pending scripted failures."""
        with self._lock:
            self.messages.clear()
            self.rejections.clear()
            self.auth_attempts.clear()
            self._failures.clear()
            self._auth_failures = 0
            self._doomed_sessions.clear()

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context for this sink's certificate."""
        if self.ca_path is None:
            raise RuntimeError("this sink was started without TLS (start_smtp(..., tls=CA))")
        return ssl.create_default_context(cafile=str(self.ca_path))

    def stop(self) -> None:
        """Stops the server thread; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __repr__(self) -> str:
        mode = "implicit TLS" if self.implicit_tls else "STARTTLS" if self.starttls else "plain"
        return f"SmtpSink({self.host}:{self.port}, {mode}, messages={len(self.messages)})"


def start_smtp(
    tmp_dir: Path | str,
    *,
    tls: CA | None = None,
    users: Mapping[str, str] = DEFAULT_USERS,
    require_auth: bool = True,
    implicit_tls: bool = False,
    auth_require_tls: bool | None = None,
    timeout: float = START_TIMEOUT,
) -> SmtpSink:
    """Starts a sink and returns once it answers; `tmp_dir` receives its certificate (when TLS).

    With `tls`: STARTTLS on offer (AUTH only after it, unless `auth_require_tls=False`), or with
    `implicit_tls=True` TLS from the first byte (AUTH then always allowed). Without `tls`: plain
    SMTP with AUTH in the clear.
    """
    if implicit_tls and tls is None:
        raise ValueError("implicit_tls needs a CA (tls=...)")
    if implicit_tls or auth_require_tls is None:
        # Over implicit TLS aiosmtpd would not count the connection as encrypted and refuse every AUTH.
        auth_require_tls = tls is not None and not implicit_tls
    sink = SmtpSink(
        users=users, require_auth=require_auth, tls=tls, implicit_tls=implicit_tls, auth_require_tls=auth_require_tls
    )
    server_context: ssl.SSLContext | None = None
    if tls is not None:
        cert_path, key_path = tls.issue(name="smtp", dir=tmp_dir)
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert_path, key_path)

    handler = _Handler(sink)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    controller = _BoundController(
        handler,
        sock,
        ready_timeout=timeout,
        ssl_context=server_context if implicit_tls else None,
        # SMTP() keyword arguments:
        server_hostname="localhost",  # never socket.getfqdn(): a DNS lookup on a machine without network
        tls_context=server_context if not implicit_tls else None,
        auth_require_tls=auth_require_tls,
        authenticator=handler.authenticate,
        decode_data=False,
    )
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)  # the loop thread may be up even when start() gave up
        sock.close()
        raise
    sink._controller = controller
    sink.port = sock.getsockname()[1]
    return sink
