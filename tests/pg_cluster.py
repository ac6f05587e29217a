"""A private, throwaway PostgreSQL cluster for fault-injection tests.

Tests that restart or crash PostgreSQL under a running worker must never touch the machine's shared
server (127.0.0.1:5432), which the rest of the suite uses. This module runs a cluster of its own
instead: `initdb` into a temporary directory, `postgres` on a free 127.0.0.1 port with trust
authentication for the `postgres` superuser, and the unix socket inside the same directory.

PostgreSQL refuses to run as root, and the tests run as root in CI, so when we are root every server
binary runs as the `postgres` OS user (through `setpriv`, which execs in place: the process we spawn
*is* the postmaster, so we can signal it and reap it ourselves without `pg_ctl`), and the cluster
directory belongs to that user.

    with start_cluster(tmp_path) as cluster:
        cluster.create_database("keybuzz")
        url = cluster.url("keybuzz")  # postgresql://postgres@127.0.0.1:<port>/keybuzz
        ...
        cluster.restart("immediate")  # every connected client sees its connection dropped

Every process of a cluster carries `cluster.name` in its command line (the postmaster through its
data directory path, the backends through `cluster_name`), so `pgrep -f <cluster.name>` finds them all.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

INSTALL_HINT = "apt-get install -y postgresql"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
TIMEOUT = 30.0
LOG_TAIL_LINES = 40
# Orphaned backends of a SIGKILLed postmaster exit by themselves once they notice its death; this is
# how long `start()` gives them before killing them, since they would keep the old shared memory busy.
ORPHAN_GRACE = 5.0
# sun_path holds 108 bytes; leave room for "/.s.PGSQL.65535" and the terminating NUL.
MAX_SOCKET_DIR_LENGTH = 90
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
SERVER_BINARIES = ("initdb", "postgres", "psql")

_running: set[PgCluster] = set()
_owner_pid = os.getpid()


class PgClusterError(RuntimeError):
    """A cluster failed to start, stop or answer; the message ends with the tail of its log."""


def pg_binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None when there is none.

    `KEYBUZZ_PG_BINDIR` overrides the search. Debian keeps the server binaries off PATH, in
    /usr/lib/postgresql/<version>/bin; elsewhere (Homebrew, source builds) `initdb` on PATH will do.
    """
    candidates: list[Path] = []
    if override := os.environ.get("KEYBUZZ_PG_BINDIR"):
        candidates.append(Path(override))
    versions = Path("/usr/lib/postgresql")
    if versions.is_dir():
        numbered = [p for p in versions.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        numbered.sort(key=lambda p: tuple(int(part) for part in p.name.split(".")), reverse=True)
        candidates.extend(p / "bin" for p in numbered)
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES):
            return bindir
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: `postgres` when we are root, else ourselves."""
    try:
        return pwd.getpwnam(SUPERUSER) if _as_root() else pwd.getpwuid(os.geteuid())
    except KeyError:
        return None


def cluster_available() -> bool:
    """Whether `start_cluster` can work here: the binaries exist and, as root, so do `postgres` and setpriv.

    Tests should skip (with `INSTALL_HINT`) rather than fail when this is False.
    """
    if pg_binaries() is None or _server_user() is None:
        return False
    return not _as_root() or shutil.which("setpriv") is not None


def _as_server_user(argv: list[str]) -> list[str]:
    """`argv` run as the server's OS user: through setpriv when we are root (it execs, no extra process)."""
    user = _server_user()
    if not _as_root() or user is None:
        return argv
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def _clean_env(home: Path) -> dict[str, str]:
    # No PG* variable of the caller (PGHOST, PGOPTIONS, PGSERVICE…) may steer our binaries elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = str(home)
    env["LC_ALL"] = "C"  # English messages in the log, so tests and we can match them
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _server_can_use(directory: Path) -> bool:
    """Whether the server's OS user can reach and write `directory` (pytest's tmp dirs are 0700 root)."""
    if not _as_root():
        return os.access(directory, os.W_OK | os.X_OK)
    probe = subprocess.run(
        _as_server_user(["test", "-w", str(directory), "-a", "-x", str(directory)]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    return probe.returncode == 0


def _make_base_dir(tmp_dir: Path) -> Path:
    """A fresh directory for one cluster, owned by the server's user: under `tmp_dir` when it can be.

    As root, `tmp_dir` is usually under /tmp/pytest-of-root (mode 0700), which the postgres user
    cannot enter, and a deep `tmp_dir` would make the socket path too long for sun_path; then the
    cluster lives in the system temp directory instead (`cleanup()` removes it all the same).
    """
    user = _server_user()
    assert user is not None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for parent in (tmp_dir.resolve(), Path(tempfile.gettempdir())):
        base = Path(tempfile.mkdtemp(prefix="keybuzz-pg-", dir=parent))
        if len(str(base / "run")) <= MAX_SOCKET_DIR_LENGTH:
            if _as_root():
                os.chown(base, user.pw_uid, user.pw_gid)
            if _server_can_use(base):
                return base
        shutil.rmtree(base, ignore_errors=True)
    raise PgClusterError(f"no directory the {user.pw_name!r} OS user can write, under {tmp_dir} or {parent}")


class PgCluster:
    """One throwaway cluster: a data directory, its log, its socket directory and (when up) a postmaster.

    Start it with `start_cluster()`. The port stays the same across `stop()`/`start()`/`restart()`/
    `kill()`, so URLs handed to a worker keep pointing at it.
    """

    def __init__(self, base_dir: Path, port: int, bindir: Path, *, durable: bool = False) -> None:
        self.base_dir = base_dir
        self.name = base_dir.name  # unique; in every process's command line (see module docstring)
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "run"
        self.log_path = base_dir / "postgresql.log"
        self.port = port
        self.bindir = bindir
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # -- addresses -----------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """A DATABASE_URL for `dbname` (trust authentication: no password)."""
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        """A psycopg connection to `dbname`; it gives up after 5 s rather than hang on a dead server."""
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.url(dbname), **kwargs)

    # -- SQL -----------------------------------------------------------------------------------------

    def create_database(self, name: str) -> None:
        """`CREATE DATABASE name` (quoted as an identifier); fails if it exists."""
        try:
            with self.connect(autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise self._error(f"CREATE DATABASE {name!r} failed: {exc}") from exc

    def psql(self, sql_text: str, dbname: str = "postgres") -> str:
        """Runs `sql_text` with the cluster's own psql and returns its unaligned, tuples-only output.

        Several statements may be given; the first error stops it and raises. Through psql rather
        than psycopg so that the text is what an operator would see (one row per line, `|` between
        columns, no header).
        """
        argv = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql_text]
        env = _clean_env(self.base_dir) | {"PGCONNECT_TIMEOUT": "5"}
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise self._error(f"psql did not finish within {TIMEOUT:.0f}s: {sql_text!r}") from exc
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            raise self._error(f"psql failed (exit {done.returncode}) on {sql_text!r}: {stderr}")
        return done.stdout.decode(errors="replace")

    # -- life cycle ----------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether our postmaster process is alive (it may still be starting up or shutting down)."""
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        """Whether the server accepts connections right now (a real login, not just an open port)."""
        if not self.is_running():
            return False
        try:
            with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def start(self, wait: bool = True, timeout: float = TIMEOUT) -> None:
        """Starts the postmaster (no-op if it runs); with `wait`, returns once it accepts connections.

        After `kill()` this is crash recovery: PostgreSQL replays its WAL before it accepts connections.
        """
        with self._lock:
            if not self.is_running():
                self._await_orphans()
                argv = _as_server_user([str(self.bindir / "postgres"), "-D", str(self.data_dir)])
                with open(self.log_path, "ab") as log:
                    # Own session: a Ctrl-C meant for pytest must not reach the postmaster (SIGINT = fast stop).
                    self.process = subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_clean_env(self.base_dir),
                        cwd=self.base_dir,
                        start_new_session=True,
                    )
                _running.add(self)
            if wait:
                self.wait_ready(timeout)

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        """Blocks until the server accepts connections; raises (with the log) if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                code = None if self.process is None else self.process.returncode
                raise self._error(f"postgres exited (code {code}) before accepting connections")
            # postmaster.pid says "ready" once it accepts connections: no login attempts (each one a
            # FATAL "starting up" line in the log) before that; its first line tells a stale file apart.
            if self._pid_file_status() == "ready" and self.is_ready():
                return
            time.sleep(0.02)
        raise self._error(f"postgres did not accept connections on port {self.port} within {timeout:.0f}s")

    def stop(self, mode: str = "fast", timeout: float = TIMEOUT) -> None:
        """Shuts the server down and waits for the postmaster to exit (no-op if it is not running).

        `smart` waits for clients to disconnect, `fast` terminates their sessions (they get
        AdminShutdown, an OperationalError), `immediate` quits without a checkpoint, like a crash: the
        next start runs recovery and clients see their connection vanish.
        """
        if mode not in STOP_SIGNALS:
            raise ValueError(f"mode must be one of {sorted(STOP_SIGNALS)}, not {mode!r}")
        with self._lock:
            if self.process is None or not self.is_running():
                self._reap()
                return
            self.process.send_signal(STOP_SIGNALS[mode])
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise self._error(f"postgres did not stop ({mode}) within {timeout:.0f}s") from exc
            finally:
                self._reap()

    def restart(self, mode: str = "fast", timeout: float = TIMEOUT) -> None:
        """`stop(mode)` then `start()`: connected clients lose their connections; new ones work after."""
        with self._lock:
            self.stop(mode, timeout=timeout)
            self.start(timeout=timeout)

    def kill(self) -> None:
        """SIGKILLs the postmaster: a crash. Its backends die on their own; `start()` then recovers."""
        with self._lock:
            if self.process is None or not self.is_running():
                return
            self.process.kill()
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired as exc:  # pragma: no cover - SIGKILL cannot be ignored
                raise self._error("postgres survived SIGKILL") from exc
            finally:
                self._reap()

    def cleanup(self) -> None:
        """Stops the server (fast, then by force if it must) and deletes the whole cluster directory."""
        with self._lock:
            try:
                self.stop("fast", timeout=10)
            except PgClusterError:
                self.kill()
            self._kill_orphans()
            self._drop_leaked_shared_memory()
            shutil.rmtree(self.base_dir, ignore_errors=True)
            _running.discard(self)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<PgCluster {self.name} port={self.port} {state} durable={self.durable}>"

    # -- diagnostics ---------------------------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the cluster's log (initdb's output, then the server's)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        """Every live process of this cluster: the postmaster and its children, orphaned ones included.

        The postmaster is `…/postgres -D <data_dir>`; its children retitle themselves
        `postgres: <cluster_name>: …`. Anything else that merely mentions the directory is not ours.
        """
        postmaster = [str(self.bindir / "postgres").encode(), b"-D", str(self.data_dir).encode()]
        child_prefix = f"postgres: {self.name}: ".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # it exited meanwhile
                continue
            if cmdline.startswith(child_prefix) or cmdline.split(b"\0")[:3] == postmaster:
                found.append(int(entry.name))
        return sorted(found)

    def _error(self, message: str) -> PgClusterError:
        return PgClusterError(f"{message}\n--- {self.log_path} (last {LOG_TAIL_LINES} lines) ---\n{self.log_tail()}")

    # -- internals -----------------------------------------------------------------------------------

    def _pid_file_status(self) -> str:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return ""
        if self.process is None or len(lines) < 8 or lines[0].strip() != str(self.process.pid):
            return ""
        return lines[7].strip()

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            _running.discard(self)

    def _await_orphans(self) -> None:
        """Waits for the backends a killed postmaster left behind, then kills the stragglers.

        While any of them lives, the old shared memory is in use and a new postmaster refuses to start
        ("pre-existing shared memory block is still in use"). Idle ones exit within milliseconds of the
        postmaster's death; one busy in a long query would only notice at its next wait.
        """
        deadline = time.monotonic() + ORPHAN_GRACE
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._kill_orphans()

    def _kill_orphans(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while self.pids():
            if time.monotonic() > deadline:
                raise self._error(f"processes {self.pids()} of the killed cluster would not exit")
            time.sleep(0.02)

    def _drop_leaked_shared_memory(self) -> None:
        """Removes the SysV shared memory interlock a SIGKILLed postmaster leaves (a clean stop removes it).

        Its id is on line 7 of postmaster.pid, which only a crashed postmaster leaves behind; it is
        removed only if it still exists with that key and nobody is attached.
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            key, shmid = (int(field) for field in lines[6].split())
        except (OSError, IndexError, ValueError):
            return
        try:
            table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        except OSError:
            return
        for row in table:
            fields = row.split()
            # columns: key shmid perms size cpid lpid nattch …
            if len(fields) > 6 and int(fields[0]) == key and int(fields[1]) == shmid and fields[6] == "0":
                subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, timeout=TIMEOUT, check=False)


def _postgresql_conf(cluster: PgCluster) -> str:
    # fsync=off makes start-up and every commit fast. It does not lose commits when only PostgreSQL
    # dies (kill(), immediate stop): WAL is still written to the kernel at commit, and that survives. It
    # only matters if the machine itself crashes; durable=True keeps real crash semantics anyway.
    # synchronous_commit stays on in both modes, so a commit a client saw acknowledged survives kill().
    settings = {
        "listen_addresses": f"'{HOST}'",
        "port": str(cluster.port),
        "unix_socket_directories": f"'{cluster.socket_dir}'",
        "cluster_name": f"'{cluster.name}'",
        "max_connections": "100",
        "shared_buffers": "32MB",
        "huge_pages": "off",
        "fsync": "on" if cluster.durable else "off",
        "full_page_writes": "on" if cluster.durable else "off",
        "synchronous_commit": "on",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "lc_messages": "'C'",
    }
    lines = [f"{name} = {value}" for name, value in settings.items()]
    return "\n# keybuzz tests/pg_cluster.py\n" + "\n".join(lines) + "\n"


PG_HBA = """\
# keybuzz tests/pg_cluster.py: a throwaway cluster on loopback only, no passwords.
local all all trust
host  all all 127.0.0.1/32 trust
"""


def _initdb(cluster: PgCluster) -> None:
    argv = [str(cluster.bindir / "initdb"), "-D", str(cluster.data_dir), "-U", SUPERUSER, "--auth=trust"]
    argv += ["-E", "UTF8", "--locale=C"]
    if not cluster.durable:
        argv.append("--no-sync")
    with open(cluster.log_path, "ab") as log:
        log.write(b"--- initdb ---\n")
        log.flush()
        try:
            done = subprocess.run(
                _as_server_user(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(cluster.base_dir),
                cwd=cluster.base_dir,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise cluster._error(f"initdb did not finish within {TIMEOUT:.0f}s") from exc
        log.write(b"--- postgres ---\n")
    if done.returncode != 0:
        raise cluster._error(f"initdb failed (exit {done.returncode})")
    # Written as root when we are root: the files only need to be readable by the server's user.
    with open(cluster.data_dir / "postgresql.conf", "a") as conf:
        conf.write(_postgresql_conf(cluster))
    (cluster.data_dir / "pg_hba.conf").write_text(PG_HBA)
    user = _server_user()
    assert user is not None
    cluster.socket_dir.mkdir(mode=0o700)
    for path in (cluster.data_dir / "postgresql.conf", cluster.data_dir / "pg_hba.conf", cluster.socket_dir):
        os.chown(path, user.pw_uid, user.pw_gid)


def start_cluster(tmp_dir: Path, *, durable: bool = False, timeout: float = TIMEOUT) -> PgCluster:
    """Creates and starts a new cluster under `tmp_dir` (see `_make_base_dir`); returns once it is ready.

    `durable=False` turns fsync off for speed; `durable=True` keeps fsync and full_page_writes on, for
    the tests that need real crash semantics. Raises `PgClusterError` (with the log) on failure; if
    another process grabbed the free port before the server bound it, it retries with a new one.
    """
    bindir = pg_binaries()
    if bindir is None:
        raise PgClusterError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
    if not cluster_available():
        raise PgClusterError(f"cannot run PostgreSQL here (as root it needs the {SUPERUSER!r} user and setpriv)")
    base = _make_base_dir(Path(tmp_dir))
    cluster = PgCluster(base, _free_port(), bindir, durable=durable)
    try:
        _initdb(cluster)
        for attempt in range(3):
            try:
                cluster.start(timeout=timeout)
                return cluster
            except PgClusterError:
                cluster.stop("immediate")
                if attempt == 2 or "could not bind" not in cluster.log_tail():
                    raise
            cluster.port = _free_port()
            with open(cluster.data_dir / "postgresql.conf", "a") as conf:
                conf.write(f"port = {cluster.port}\n")
    except BaseException:
        cluster.cleanup()
        raise
    raise AssertionError("unreachable")  # pragma: no cover


@atexit.register
def _stop_leftovers() -> None:
    """Clusters a test forgot to clean up must not outlive the test run (nor be killed by a forked child)."""
    if os.getpid() != _owner_pid:
        return
    for cluster in list(_running):
        with contextlib.suppress(Exception):
            cluster.stop("immediate", timeout=10)
        with contextlib.suppress(Exception):
            cluster.cleanup()
