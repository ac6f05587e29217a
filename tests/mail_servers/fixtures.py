"""pytest fixtures for the real mail servers; load with `pytest_plugins = ["tests.mail_servers.fixtures"]`
in the top-level conftest (pytest accepts `pytest_plugins` there only), or import the fixtures by name.

- `mail_ca`: the session's throwaway CA (`mail_ca.ca_path` is what clients must trust).
- `dovecot`: a session-wide Dovecot without TLS; `dovecot_tls`: one with STARTTLS on `port` and
  implicit TLS on `tls_port`, certificates from `mail_ca`.
- `mailbox_user` / `mailbox_user_tls`: a fresh user (random name and password) per test on those
  servers, so no test sees another's mail; the servers are shared, the mailboxes are not.
- `smtp_sink`: a per-test aiosmtpd sink with STARTTLS and AUTH (required); `smtp_sink_factory(...)`
  makes others (`tls=False` for plain SMTP with AUTH in the clear, `implicit_tls=True`, `require_auth=False`).

A missing server skips the test with the command that installs it, except under CI (`CI=true`),
where a missing server is a failure: CI must not go green by skipping the mail tests.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from tests.mail_servers import dovecot as dovecot_module
from tests.mail_servers.dovecot import Dovecot, MailUser, dovecot_available, start_dovecot
from tests.mail_servers.tls import CA, make_ca

if TYPE_CHECKING:
    from tests.mail_servers.smtp import SmtpSink

SMTP_INSTALL_HINT = "pip install aiosmtpd (it belongs in requirements-dev.txt)"


def unavailable(message: str) -> NoReturn:
    """Skips the test, or fails it under CI, where every server the tests need must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing mail server fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def smtp_available() -> bool:
    return importlib.util.find_spec("aiosmtpd") is not None


def _require_dovecot() -> None:
    if not dovecot_available():
        unavailable(f"Dovecot's IMAP server is not installed ({dovecot_module.DOVECOT}): {dovecot_module.INSTALL_HINT}")


@pytest.fixture(scope="session")
def mail_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("mail-ca"))


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    _require_dovecot()
    server = start_dovecot(tmp_path_factory.mktemp("dovecot"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_tls(tmp_path_factory: pytest.TempPathFactory, mail_ca: CA) -> Iterator[Dovecot]:
    _require_dovecot()
    server = start_dovecot(tmp_path_factory.mktemp("dovecot-tls"), tls=mail_ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox_user(dovecot: Dovecot) -> MailUser:
    """A new user on `dovecot` for this test only (`.username`, `.password`, `.server`)."""
    return dovecot.add_user()


@pytest.fixture
def mailbox_user_tls(dovecot_tls: Dovecot) -> MailUser:
    """A new user on `dovecot_tls` for this test only."""
    return dovecot_tls.add_user()


@pytest.fixture
def smtp_sink_factory(tmp_path: Path, mail_ca: CA) -> Iterator[Callable[..., SmtpSink]]:
    """`smtp_sink_factory(tls=True, **start_smtp_kwargs)` starts a sink; all are stopped after the test."""
    if not smtp_available():
        unavailable(f"aiosmtpd is not installed: {SMTP_INSTALL_HINT}")
    from tests.mail_servers.smtp import start_smtp

    sinks: list[SmtpSink] = []

    def make(*, tls: bool = True, **kwargs: Any) -> SmtpSink:
        sink = start_smtp(tmp_path / f"smtp-{len(sinks)}", tls=mail_ca if tls else None, **kwargs)
        sinks.append(sink)
        return sink

    try:
        yield make
    finally:
        for sink in sinks:
            sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    """A sink with STARTTLS (certificate from `mail_ca`) and AUTH required, user seller@acme.example / secret."""
    return smtp_sink_factory()
