"""A real Dovecot IMAP server for the tests: Debian's `dovecot-imapd`, never its system service.

`start_dovecot()` writes a throwaway config and runs `/usr/sbin/dovecot -F -c <config>` as a child of
the test process, listening on 127.0.0.1 only, on free ports: `port` (plain IMAP, STARTTLS when a CA
is given) and `tls_port` (implicit TLS). Users live in a passwd-file database, one file per user, so a
test can add its own mailbox user while the server runs (see `add_user`). Mail is stored as Maildir.

Why it is set up the way it is (Dovecot 2.3, what Debian 12 ships; 2.4 changed the config syntax and
is refused loudly rather than half-configured):

- As root (CI), the master must stay root, login processes must not be root ("This process must not
  be run as root"), and mail access must not be root either ("Mail access not allowed for root").
  So: internal services run as root (they read the 0700 pytest directory), login processes as
  `dovenull` (Debian's login user, from the package) and mail processes as the `dovecot` account.
  That account cannot enter pytest's 0700 tmp directories, so the Maildirs and `base_dir` live in a
  0711 spool directory of their own in the system temp dir (a short path, too: unix socket paths are
  limited to 107 bytes), removed by `stop()`.
- As any other user, every process runs as that user; nothing changes privileges or chroots.
- Plaintext logins are allowed on the plain port (`disable_plaintext_auth = no`) because the code under
  test also supports security "none" on loopback. Anvil's auth-penalty socket is switched off: every test
  logs in from 127.0.0.1, and one wrong password would otherwise delay every later login by 2-15 s.
  A refused login still takes ~0.5 s (the auth process answers failures on a 500 ms timer).
- passwd-file: Dovecot stats a passwd file at most once per second and serves its cached copy in
  between, so a user written into a shared file can stay "unknown" for up to a second. One file per
  user (`args = .../users/%u`) sidesteps that: a new user's file has never been cached.
- Maildir with `/` as the hierarchy separator (Maildir++ on disk), `mail_fsync = never` (tests do not
  survive power loss), and IMAP login processes in high-performance mode (no fork per connection).
"""

from __future__ import annotations

import atexit
import base64
import datetime
import functools
import grp
import imaplib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import string
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from tests.mail_servers.tls import CA
from tests.net import HOST, free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
INSTALL_HINT = "apt-get install -y dovecot-imapd"
DEFAULT_USERS: Mapping[str, str] = MappingProxyType({"seller": "secret"})

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 10.0
_START_ATTEMPTS = 3
_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
# Maildir "info" letters for the system flags, in the order Maildir wants them (ASCII).
_MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}

Security = Literal["none", "starttls", "tls"]


@functools.cache
def dovecot_version() -> str | None:
    """`2.3.19.1` for Debian 12's package; None when the binary is missing or does not run."""
    if not os.access(DOVECOT, os.X_OK):
        return None
    try:
        out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split()[0] if out.strip() else None


def dovecot_available() -> bool:
    """True when Dovecot and its IMAP server (the `dovecot-imapd` package) are installed."""
    return dovecot_version() is not None and any(Path(d, "imap-login").exists() for d in _LIBEXEC_DIRS)


class DovecotError(RuntimeError):
    """Dovecot did not start or did not do what a helper asked; the message carries its log."""


@dataclass(frozen=True)
class MailUser:
    """A mailbox login on a running server."""

    username: str
    password: str
    server: Dovecot = field(repr=False, compare=False)


@dataclass(eq=False)
class Dovecot:
    """A running server. Helpers log in over the plain port as the user, as a mail client would."""

    port: int
    tls_port: int | None
    ca_path: Path | None
    users: dict[str, str]
    workdir: Path
    spool: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    mail_owner: tuple[int, int] | None = field(default=None, repr=False)
    host: str = HOST
    _sequence: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _folder_paths: dict[tuple[str, str], Path] = field(default_factory=dict, repr=False)

    # -- server ---------------------------------------------------------------------------------

    @property
    def users_dir(self) -> Path:
        return self.workdir / "users"

    @property
    def mail_root(self) -> Path:
        return self.spool / "mail"

    def log(self) -> str:
        """Dovecot's own log, with the master's stderr (config errors land there) at the end."""
        paths = (self.log_path, self.log_path.with_suffix(".stderr"))
        parts = [p.read_text(errors="replace") for p in paths if p.exists()]
        return "\n".join(part for part in parts if part)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        """Stops the master (it takes its children down) and removes the spool; safe to call twice."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Our own process group (start_new_session): the master and whatever it forked.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.spool, ignore_errors=True)

    def doveadm(self, *args: str) -> str:
        """Runs `doveadm -c <our config> ARGS…` and returns its output; raises with it on failure.

        doveadm takes mailbox names in UTF-8 (IMAP's modified UTF-7 is only for the wire).
        """
        try:
            done = subprocess.run(
                [DOVEADM, "-c", str(self.config_path), *args], capture_output=True, text=True, timeout=IO_TIMEOUT
            )
        except subprocess.TimeoutExpired as exc:
            raise DovecotError(f"doveadm {' '.join(args)} timed out\n{self.log_tail()}") from exc
        if done.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} exited {done.returncode}: {done.stderr or done.stdout}\n{self.log_tail()}"
            )
        return done.stdout

    # -- users ----------------------------------------------------------------------------------

    def add_user(self, username: str | None = None, password: str | None = None) -> MailUser:
        """Adds (or replaces) a login; a new name is usable at once, no reload needed.

        Without arguments: a fresh random user (`u-1a2b3c4d5e`) with a random password. A changed
        password on an existing user can take up to a second to apply (Dovecot's passwd-file stat gate).
        """
        username = username or f"u-{secrets.token_hex(5)}"
        password = password if password is not None else secrets.token_urlsafe(12)
        _write_passwd_file(self.users_dir, username, password)
        self.users[username] = password
        return MailUser(username=username, password=password, server=self)

    def maildir(self, user: str) -> Path:
        """The user's Maildir (its INBOX); exists once the user has logged in or received mail."""
        return self.mail_root / user / "Maildir"

    def folder_path(self, user: str, folder: str = "INBOX") -> Path:
        """Where Dovecot keeps `folder` on disk (asked of Dovecot itself, so the layout never drifts)."""
        if folder.upper() == "INBOX":
            return self.maildir(user)  # mail_location = maildir:~/Maildir in our config
        key = (user, folder)
        if key not in self._folder_paths:
            self._folder_paths[key] = Path(self.doveadm("mailbox", "path", "-u", user, "-t", "mailbox", folder).strip())
        return self._folder_paths[key]

    # -- IMAP -----------------------------------------------------------------------------------

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context for this server's certificate (CA file, hostname checked)."""
        if self.ca_path is None:
            raise DovecotError("this server was started without TLS (start_dovecot(..., tls=CA))")
        return ssl.create_default_context(cafile=str(self.ca_path))

    def connect(
        self, user: str, *, password: str | None = None, security: Security = "none", timeout: float = IO_TIMEOUT
    ) -> imaplib.IMAP4:
        """A logged-in imaplib client: plain, STARTTLS on `port`, or implicit TLS on `tls_port`.

        TLS is verified against `ca_path` with hostname checking. A refused login raises
        `imaplib.IMAP4.error` (Dovecot answers `NO [AUTHENTICATIONFAILED]`).
        """
        secret = password if password is not None else self.users[user]
        imap: imaplib.IMAP4
        if security == "tls":
            if self.tls_port is None:
                raise DovecotError("this server has no implicit-TLS port (start_dovecot(..., tls=CA))")
            imap = imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=self.client_context(), timeout=timeout)
        else:
            imap = imaplib.IMAP4(self.host, self.port, timeout=timeout)
        try:
            if security == "starttls":
                imap.starttls(ssl_context=self.client_context())
            imap.login(user, secret)
        except BaseException:
            imap.shutdown()
            raise
        return imap

    @contextmanager
    def session(
        self, user: str, *, password: str | None = None, security: Security = "none", timeout: float = IO_TIMEOUT
    ) -> Iterator[imaplib.IMAP4]:
        """`with server.session("seller") as imap: …` — `connect()` and a LOGOUT at the end."""
        imap = self.connect(user, password=password, security=security, timeout=timeout)
        try:
            yield imap
        finally:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                imap.shutdown()

    def append(
        self,
        user: str,
        raw: bytes,
        *,
        folder: str = "INBOX",
        flags: Sequence[str] = (),
        internal_date: datetime.datetime | None = None,
    ) -> int:
        """Files one message with IMAP APPEND, as another client would; returns its UID (APPENDUID)."""
        with self.session(user) as imap:
            if folder.upper() != "INBOX":
                _ensure_folder(imap, folder)
            typ, data = imap.append(
                _mailbox(folder),
                f"({' '.join(flags)})" if flags else None,
                imaplib.Time2Internaldate(internal_date) if internal_date else None,
                raw,
            )
        _check(typ, data, f"APPEND to {folder!r} as {user}")
        match = re.search(rb"APPENDUID \d+ (\d+)", b" ".join(d for d in data if isinstance(d, bytes)))
        if match is None:
            raise DovecotError(f"APPEND to {folder!r} gave no APPENDUID: {data!r}")
        return int(match.group(1))

    def create_folder(self, user: str, name: str) -> None:
        """Creates `name` (hierarchy separator `/`); an existing folder is left as it is."""
        with self.session(user) as imap:
            _ensure_folder(imap, name)

    def status(self, user: str, folder: str = "INBOX") -> dict[str, int]:
        """STATUS: MESSAGES, UIDVALIDITY, UIDNEXT and UNSEEN, without selecting the folder."""
        with self.session(user) as imap:
            return _status(imap, folder)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        return self.status(user, folder)["UIDVALIDITY"]

    def message_count(self, user: str, folder: str = "INBOX") -> int:
        return self.status(user, folder)["MESSAGES"]

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Gives `folder` a new UIDVALIDITY while the server runs, as if it had been recreated.

        Done through Dovecot itself (`doveadm mailbox update --uid-validity`), so its indexes stay
        consistent and open sessions are told; the messages stay. Returns the new value, checked over IMAP.
        """
        old = self.uidvalidity(user, folder)
        new = old + 1 if old < 0xFFFFFFFF else 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        seen = self.uidvalidity(user, folder)
        if seen != new:
            raise DovecotError(f"UIDVALIDITY of {user}/{folder} is {seen} after setting {new} (was {old})")
        return new

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[str, ...]]:
        """`{uid: flags}` of every message, read with EXAMINE (read-only: reading sets no flag).

        A UID missing from the result was expunged. `\\Recent` is left out: it depends on which
        session looked first, not on what a client did.
        """
        with self.session(user) as imap:
            _check(*imap.select(_mailbox(folder), readonly=True), f"EXAMINE {folder!r} as {user}")
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            _check(typ, data, f"UID FETCH FLAGS in {folder!r} as {user}")
        result: dict[int, tuple[str, ...]] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid = re.search(rb"UID (\d+)", line)
            flags = re.search(rb"FLAGS \(([^)]*)\)", line)
            if uid and flags:
                names = flags.group(1).decode().split()
                result[int(uid.group(1))] = tuple(f for f in names if f != "\\Recent")
        return result

    def bulk_append(
        self,
        user: str,
        messages: Iterable[bytes],
        *,
        folder: str = "INBOX",
        flags: Sequence[str] = (),
        internal_date: datetime.datetime | None = None,
        timeout: float = 60.0,
    ) -> int:
        """Files many messages fast by writing them straight into the Maildir (tmp/ then a rename
        into cur/, the Maildir delivery protocol), which is safe while the server runs.

        Messages get UIDs in the order given. Returns once IMAP STATUS shows them all (so the caller
        can rely on them being there); returns how many were written. `flags`: system flags only.
        """
        unknown = [f for f in flags if f not in _MAILDIR_FLAGS]
        if unknown:
            raise ValueError(f"bulk_append takes system flags only, not {unknown}")
        info = "2," + "".join(sorted(_MAILDIR_FLAGS[f] for f in flags))
        with self.session(user) as imap:
            if folder.upper() != "INBOX":
                _ensure_folder(imap, folder)
            expected = _status(imap, folder)["MESSAGES"]
            directory = self.folder_path(user, folder)
            stamp = internal_date.timestamp() if internal_date else time.time()
            seconds, pid, written = int(time.time()), os.getpid(), 0
            for raw in messages:
                n = next(self._sequence)
                # Dovecot numbers new files in the order of the time, then the M<microseconds>, in their names.
                name = f"{seconds + n // 1_000_000}.M{n % 1_000_000}P{pid}Q{n}.keybuzz-test,S={len(raw)}"
                tmp = directory / "tmp" / name
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(raw)
                if self.mail_owner is not None:
                    os.chown(tmp, *self.mail_owner)
                os.utime(tmp, (stamp, stamp))  # Maildir's INTERNALDATE is the file's mtime
                os.rename(tmp, directory / "cur" / f"{name}:{info}")
                written += 1
            expected += written
            deadline = time.monotonic() + timeout
            while (count := _status(imap, folder)["MESSAGES"]) < expected:
                if time.monotonic() > deadline:
                    raise DovecotError(
                        f"{user}/{folder} shows {count} messages after {timeout:.0f}s, expected {expected}\n"
                        + self.log_tail()
                    )
                time.sleep(0.05)
        return written


# -- starting -------------------------------------------------------------------------------------

_CONFIG_23 = string.Template("""\
# Generated by tests/mail_servers/dovecot.py for one test run (Dovecot 2.3 syntax). Not a system service.
protocols = imap
listen = 127.0.0.1
base_dir = $base_dir
state_dir = $state_dir
instance_name = $instance_name
log_path = $log_path
info_log_path = $log_path
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes

default_internal_user = $internal_user
default_internal_group = $internal_group
default_login_user = $login_user
mail_uid = $mail_uid
mail_gid = $mail_gid
first_valid_uid = $mail_uid
last_valid_uid = $mail_uid
first_valid_gid = $mail_gid
last_valid_gid = $mail_gid

mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Archive {
    special_use = \\Archive
  }
}
protocol imap {
  mail_max_userip_connections = 200
}

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN $users_dir/%u
}
userdb {
  driver = passwd-file
  args = $users_dir/%u
  default_fields = home=$mail_root/%u
}

$ssl
# Login processes stay up between connections (no fork per login) and need no chroot: chroot needs
# root and guards nothing in a test.
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $tls_port
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
  chroot =
}
# Mail processes are reused too (every user has the same uid, which is what makes that safe), as a
# busy server is configured: a fork and exec per login would make the local server, not the code under
# test, the benchmark's bottleneck.
service imap {
  service_count = 1000
  process_min_avail = 2
}
# No auth penalty: every test logs in from 127.0.0.1, and one wrong password would otherwise slow every
# later login (2 s doubling to 15 s). Without this socket the auth process turns the penalty off.
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
""")


def start_dovecot(
    tmp_dir: Path | str,
    *,
    tls: CA | None = None,
    users: Mapping[str, str] = DEFAULT_USERS,
    timeout: float = START_TIMEOUT,
) -> Dovecot:
    """Starts Dovecot and returns once it greets on every port; raises `DovecotError` with its log if not.

    `tmp_dir` keeps the config, the log (`dovecot-<port>.log`, `log_path`), the users and the certificate;
    the Maildirs and `base_dir` go to a spool directory of their own (see the module docstring), removed
    by `stop()`.
    """
    version = dovecot_version()
    if version is None or not dovecot_available():
        raise DovecotError(f"Dovecot's IMAP server is not installed ({DOVECOT}): {INSTALL_HINT}")
    if not version.startswith("2.3."):
        raise DovecotError(
            f"Dovecot {version} is installed; tests/mail_servers/dovecot.py writes Dovecot 2.3 config "
            "(2.4 renamed most settings): add a 2.4 template there before using it"
        )
    workdir = Path(tmp_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "users").mkdir(mode=0o700, exist_ok=True)
    for name, password in users.items():
        _write_passwd_file(workdir / "users", name, password)
    ssl_block = "ssl = no"
    if tls is not None:
        cert_path, key_path = tls.issue(name="dovecot", dir=workdir)
        ssl_block = f"ssl = yes\nssl_cert = <{cert_path}\nssl_key = <{key_path}\nssl_min_protocol = TLSv1.2"

    last_error = ""
    for _attempt in range(_START_ATTEMPTS):
        spool = _make_spool()
        try:
            server = _launch(workdir, spool, tls, ssl_block, dict(users), timeout)
        except _PortTaken as exc:
            shutil.rmtree(spool, ignore_errors=True)
            last_error = str(exc)
            continue
        except BaseException:
            shutil.rmtree(spool, ignore_errors=True)
            raise
        atexit.register(server.stop)  # a session that dies mid-way must not leave a daemon behind
        return server
    raise DovecotError(f"Dovecot could not bind free ports in {_START_ATTEMPTS} attempts:\n{last_error}")


class _PortTaken(Exception):
    """Another process took a port between our probe and Dovecot's bind: try other ports."""


def _launch(
    workdir: Path, spool: Path, tls: CA | None, ssl_block: str, users: dict[str, str], timeout: float
) -> Dovecot:
    internal_user, internal_group, login_user, mail_owner = _accounts()
    mail_root = spool / "mail"
    mail_root.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(mail_root, *mail_owner)
    port, tls_port = free_port(), free_port() if tls is not None else 0
    config_path = workdir / f"dovecot-{port}.conf"
    log_path = workdir / f"dovecot-{port}.log"  # one per attempt: a retry must not read the last one's errors
    (workdir / "state").mkdir(exist_ok=True)
    config_path.write_text(
        _CONFIG_23.substitute(
            base_dir=spool / "run",
            state_dir=workdir / "state",
            instance_name=f"keybuzz-test-{port}",
            log_path=log_path,
            internal_user=internal_user,
            internal_group=internal_group,
            login_user=login_user,
            mail_uid=mail_owner[0],
            mail_gid=mail_owner[1],
            users_dir=workdir / "users",
            mail_root=mail_root,
            ssl=ssl_block,
            port=port,
            tls_port=tls_port,
        )
    )
    with open(log_path.with_suffix(".stderr"), "wb") as stderr:
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # its own process group: stop() can end it and its children together
        )
    server = Dovecot(
        port=port,
        tls_port=tls_port or None,
        ca_path=tls.ca_path if tls is not None else None,
        users=users,
        workdir=workdir,
        spool=spool,
        config_path=config_path,
        log_path=log_path,
        process=process,
        mail_owner=mail_owner if os.geteuid() == 0 else None,
    )
    tls_context = server.client_context() if tls is not None else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _greets(port) and (server.tls_port is None or _greets(server.tls_port, tls_context)):
            return server
        if ": Fatal: " in server.log():
            break  # a child that cannot start is retried with back-off for ever: do not wait for that
        time.sleep(0.05)
    exited = process.poll() is not None
    server.stop()
    log = server.log()
    if "Address already in use" in log:
        raise _PortTaken(log)
    listeners = f"127.0.0.1:{port}" + (f" and :{tls_port} (TLS)" if tls_port else "")
    what = f"exited with code {process.returncode}" if exited else f"did not greet within {timeout:.0f}s"
    raise DovecotError(
        f"Dovecot {what} on {listeners}; config {config_path}; its log:\n" + "\n".join(log.splitlines()[-80:])
    )


def _greets(port: int, tls_context: ssl.SSLContext | None = None) -> bool:
    """True once an IMAP greeting arrives on `port` (through a verified TLS handshake if asked)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as raw:
            if tls_context is None:
                return raw.recv(256).startswith(b"* OK")
            with tls_context.wrap_socket(raw, server_hostname=HOST) as sock:
                return sock.recv(256).startswith(b"* OK")
    except (OSError, ssl.SSLError):
        return False


def _accounts() -> tuple[str, str, str, tuple[int, int]]:
    """(internal user, internal group, login user, (mail uid, mail gid)) for this process."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_name, grp.getgrgid(os.getegid()).gr_name, me.pw_name, (me.pw_uid, me.pw_gid)
    login_user = _first_account("dovenull", "nobody")
    mail = pwd.getpwnam(_first_account("dovecot", "nobody"))
    return "root", "root", login_user, (mail.pw_uid, mail.pw_gid)


def _first_account(*names: str) -> str:
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise DovecotError(f"none of the accounts {names} exists; the dovecot-core package creates them")


def _make_spool() -> Path:
    """A 0711 directory that unprivileged mail processes can enter (pytest's own tmp dirs are 0700)."""
    parent = tempfile.gettempdir()
    if not all(os.stat(p).st_mode & stat.S_IXOTH for p in [parent, *map(str, Path(parent).parents)]):
        parent = "/tmp"
    spool = Path(tempfile.mkdtemp(prefix="keybuzz-dovecot-", dir=parent))
    spool.chmod(0o711)
    return spool


def _write_passwd_file(users_dir: Path, username: str, password: str) -> None:
    if not _USERNAME.fullmatch(username):
        raise ValueError(f"unsuitable mailbox user name {username!r} (letters, digits, ._@+- only)")
    if any(c in password for c in ":\r\n"):
        raise ValueError("a passwd-file password cannot hold ':' or line breaks")
    path = users_dir / username
    tmp = users_dir / f".{username}.tmp"
    tmp.write_text(f"{username}:{{PLAIN}}{password}::::::\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


# -- IMAP plumbing --------------------------------------------------------------------------------


def _imap_utf7(name: str) -> str:
    """RFC 3501 modified UTF-7, the encoding of mailbox names on the wire."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _mailbox(name: str) -> str:
    """A mailbox argument for imaplib, which sends strings as they are: encoded and quoted."""
    encoded = _imap_utf7(name).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'


def _check(typ: str, data: Sequence[object], what: str) -> None:
    if typ != "OK":
        raise DovecotError(f"{what} failed: {typ} {data!r}")


def _ensure_folder(imap: imaplib.IMAP4, name: str) -> None:
    typ, data = imap.create(_mailbox(name))
    if typ != "OK" and not any(isinstance(d, bytes) and b"ALREADYEXISTS" in d for d in data):
        raise DovecotError(f"CREATE {name!r} failed: {typ} {data!r}")


def _status(imap: imaplib.IMAP4, folder: str) -> dict[str, int]:
    typ, data = imap.status(_mailbox(folder), "(MESSAGES UIDVALIDITY UIDNEXT UNSEEN)")
    _check(typ, data, f"STATUS {folder!r}")
    line = b" ".join(d for d in data if isinstance(d, bytes))
    items = re.search(rb"\(([^()]*)\)\s*$", line)  # the last group: the name before it may hold anything
    if items is None:
        raise DovecotError(f"unexpected STATUS answer for {folder!r}: {data!r}")
    return {key.decode(): int(value) for key, value in re.findall(rb"([A-Z]+) (\d+)", items.group(1))}
