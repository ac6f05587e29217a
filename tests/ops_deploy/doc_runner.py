"""Runs docs/DEPLOY.md: every ```bash block, in order, in one bash shell, inside a sandbox, and
compares each block's output with the ```text expect block after it.

    .venv/bin/python -m tests.ops_deploy.doc_runner [--keep] [--doc docs/DEPLOY.md]

(`scripts/check-deploy.sh` calls it in CI, after installing nginx and logrotate.)

The sandbox stands in for the production host:
- a temporary root holds /opt/keybuzz, /etc/{systemd/system,cron.d,logrotate.d,nginx,letsencrypt},
  /var/log and /run/lock; the doc's commands have those paths rewritten (and the outputs mapped
  back before comparison);
- PostgreSQL: a new database `keybuzz_deploycheck_<random>` on the server of DATABASE_URL (default
  postgresql://postgres@127.0.0.1:5432), dropped at the end; Vault: an OpenBao dev server on a free
  loopback port (tests/openbao.py), holding the eComLG app at keybuzz/ai/amazon_spapi_app_temp;
  Login with Amazon: a small fake speaking Amazon's wire format (the only setting the sandbox adds
  to .env.production is AMAZON_LWA_TOKEN_URL);
- stand-ins, first on PATH, for what needs the real host (`python -m … stub NAME`): sudo (env
  reset like sudo's, no user switch), useradd, install (owner options dropped), git clone (copies
  the checkout), nano (fills the `***`), vault (OpenBao's CLI; login is a no-op), curl (real curl
  reaching localhost:4000 and platform-api.keybuzz.io in the sandbox), systemctl (runs the
  unit's ExecStart with its EnvironmentFile, WorkingDirectory and a notify socket; nginx),
  journalctl (the unit's output), systemd-analyze / logrotate / nginx (the real tools on the
  installed files, their paths moved into the sandbox);
- directives in the doc (HTML comments): `<!-- ci: amazon-consent -->` plays the seller's browser
  and Amazon (checks the last authUrl, sets CALLBACK_URL as Amazon's redirect would);
  `<!-- ci: cron-tick -->` runs every job of the installed /etc/cron.d file once, as cron would.

Only processes started here are stopped, by their ids.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.net import free_port
from tests.openbao import OpenBao

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "DEPLOY.md"
APP_DIR = "/opt/keybuzz/keybuzz-backend"
PUBLIC_HOST = "platform-api.keybuzz.io"
VAULT_URL = "https://vault.keybuzz.io:8200"
SELLER = "A2SANDBOXSELLER1"
CONFIG_ENV = "KEYBUZZ_DEPLOYCHECK_CONFIG"
# Paths of the host that live in the sandbox root (the doc's text, the installed files).
HOST_PATHS = [
    "/opt/keybuzz",
    "/etc/systemd/system",
    "/etc/cron.d",
    "/etc/logrotate.d",
    "/etc/nginx",
    "/etc/letsencrypt",
    "/var/log",
    "/run/lock",
    "/var/www",
]
# Commands that need the real host: only in ```bash host blocks.
HOST_COMMANDS = re.compile(
    r"(?m)(^|[\s;&|(])(systemctl|journalctl|useradd|nano|vault|nginx|git clone|"
    r"systemd-analyze|logrotate|kill %\d|install -o)\b"
)
APP_SECRET_PATHS = {"external_test": "keybuzz/ai/amazon_spapi_app_temp", "keybuzz": "keybuzz/ai/amazon_spapi_app"}
ECOMLG_APP = {
    "client_id": "amzn1.application-oa2-client.ECOMLG_SANDBOX",
    "client_secret": "ecomlg-sandbox-client-secret",
    "application_id": "amzn1.sp.solution.ECOMLG_SANDBOX",
    "region": "eu-west-1",
}
BLOCK_TIMEOUT = 300
SLOW_BLOCK_TIMEOUT = 900  # pip install


class DocError(Exception):
    pass


# --- Parsing the doc ------------------------------------------------------------------------------


@dataclass
class Item:
    kind: str  # "run" | "host" | "metrics" | "expect" | "directive"
    text: str
    line: int


_FENCE = re.compile(r"^```(.*)$")
_DIRECTIVE = re.compile(r"^<!--\s*ci:\s*([\w-]+)\s*-->\s*$")


def parse_doc(text: str) -> list[Item]:
    items: list[Item] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line.strip())
        if directive:
            items.append(Item("directive", directive.group(1), i + 1))
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            i += 1
            continue
        info = fence.group(1).split()
        start = i + 1
        j = start
        while j < len(lines) and lines[j] != "```":
            j += 1
        if j == len(lines):
            raise DocError(f"line {i + 1}: unclosed code block")
        body = "\n".join(lines[start:j]) + "\n"
        lang, tags = (info[0] if info else ""), info[1:]
        if lang == "bash":
            kind = {(): "run", ("host",): "host", ("metrics",): "metrics"}.get(tuple(tags))
            if kind is None:
                raise DocError(f"line {i + 1}: a bash block is ```bash, ```bash host or ```bash metrics")
            items.append(Item(kind, body, i + 1))
        elif lang == "text" and tags == ["expect"]:
            items.append(Item("expect", body, i + 1))
        elif lang in ("sh", "shell", "console") or (lang == "text" and tags):
            raise DocError(f"line {i + 1}: ```{' '.join(info)} is not a block this check knows")
        i = j + 1
    return items


def lint(items: list[Item]) -> None:
    """Host-only commands are marked, and an expected output follows a block that runs."""
    previous = None
    for item in items:
        if item.kind == "run" and HOST_COMMANDS.search(item.text):
            raise DocError(f"line {item.line}: a host-only command in a ```bash block; mark it ```bash host")
        if item.kind == "host" and not HOST_COMMANDS.search(item.text):
            raise DocError(f"line {item.line}: a ```bash host block without a host-only command")
        if item.kind == "expect" and (previous is None or previous.kind not in ("run", "host")):
            raise DocError(f"line {item.line}: an expected output must follow a ```bash block")
        if item.kind == "directive" and item.text not in DIRECTIVES:
            raise DocError(f"line {item.line}: unknown directive {item.text!r}")
        previous = item


def _normalize(line: str) -> str:
    return " ".join(line.split())


def expected_pattern(line: str) -> re.Pattern[str]:
    """`…` matches anything; `<some words>` matches the same text at each use in the line."""
    parts = re.split(r"(…|<[a-z][a-z ]*>)", _normalize(line))
    names: dict[str, str] = {}
    regex = ""
    for part in parts:
        if part == "…":
            regex += ".*?"
        elif part.startswith("<") and part.endswith(">") and len(part) > 2:
            if part in names:
                regex += f"(?P={names[part]})"
            else:
                names[part] = f"p{len(names)}"
                regex += rf"(?P<{names[part]}>\S+?)"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def match_expected(expected: str, output: str) -> list[str]:
    """The expected lines not found, in order, among the output's lines (empty: all found)."""
    actual = [_normalize(line) for line in output.splitlines()]
    position = 0
    missing = []
    for line in expected.splitlines():
        if not line.strip():
            continue
        pattern = expected_pattern(line)
        for index in range(position, len(actual)):
            if pattern.search(actual[index]):
                position = index + 1
                break
        else:
            missing.append(line)
    return missing


# --- The sandbox ----------------------------------------------------------------------------------


def find_tool(name: str) -> str:
    extra = os.environ.get("KEYBUZZ_DEPLOY_TOOLS_PATH", "")
    path = os.pathsep.join(p for p in (extra, os.environ.get("PATH", ""), "/usr/sbin:/sbin") if p)
    found = shutil.which(name, path=path)
    if not found:
        raise DocError(f"{name} is not installed (scripts/check-deploy.sh installs it)")
    return found


@dataclass
class Config:
    """What the stand-ins need, written to <root>/sandbox.json."""

    root: str
    app_port: int
    http_port: int
    https_port: int
    lwa_port: int
    vault_addr: str
    vault_token: str
    database_url: str
    tools: dict[str, str]
    fill: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Config:
        return cls(**json.loads(Path(os.environ[CONFIG_ENV]).read_text()))

    @property
    def app(self) -> Path:
        return Path(self.root + APP_DIR)

    def to_sandbox(self, text: str) -> str:
        for path in HOST_PATHS:
            text = re.sub(rf"(?<![\w/.]){re.escape(path)}(?=[/\s\"':;]|$)", self.root + path, text)
        return text.replace(VAULT_URL, self.vault_addr)

    def from_sandbox(self, text: str) -> str:
        text = text.replace(self.root, "")
        for host in ("127.0.0.1", "localhost"):
            text = text.replace(f"{host}:{self.app_port}", f"{host}:4000")
        return text.replace(self.vault_addr, VAULT_URL)

    def journal(self, unit: str) -> Path:
        return Path(self.root) / "journal" / f"{unit}.log"


class FakeLwa:
    """Login with Amazon's token endpoint: authorization_code for the codes the consent step
    handed out (with the app it expects), refresh_token for the tokens it issued."""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.calls: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                fake.calls.append(form)
                status, body = fake.answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type")
        if grant == "authorization_code":
            expected = self.codes.pop(form.get("code", ""), None)
            if expected is None:
                return 400, {"error": "invalid_grant", "error_description": "The authorization code is invalid"}
            if (form.get("client_id"), form.get("client_secret")) != expected:
                return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
            refresh = f"Atzr|IwEBIsandbox-{secrets.token_hex(16)}"
            self.refresh_tokens.add(refresh)
            return 200, {
                "access_token": f"Atza|IwEBIsandbox-{secrets.token_hex(8)}",
                "refresh_token": refresh,
                "token_type": "bearer",
                "expires_in": 3600,
            }
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            return 200, {
                "access_token": f"Atza|IwEBIsandbox-{secrets.token_hex(8)}",
                "token_type": "bearer",
                "expires_in": 3600,
            }
        return 400, {"error": "invalid_grant", "error_description": "The request has an invalid grant parameter"}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "") or "postgresql://postgres@127.0.0.1:5432/postgres"
    if not url.startswith(("postgres://", "postgresql://")):
        raise DocError("the DEPLOY.md check needs PostgreSQL: set DATABASE_URL=postgresql://…")
    return url


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


class Sandbox:
    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="keybuzz-deploycheck-"))
        self.tmp.chmod(0o755)  # nginx's workers read /static/ there
        self.root = self.tmp / "root"
        self.database = f"keybuzz_deploycheck_{secrets.token_hex(4)}"
        self.admin_url = _admin_url()
        self.openbao: OpenBao | None = None
        self.lwa: FakeLwa | None = None
        self.config: Config | None = None

    def __enter__(self) -> Sandbox:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # The sandbox's parts, once _setup has made them.
    @property
    def cfg(self) -> Config:
        assert self.config is not None, "the sandbox is not set up"
        return self.config

    @property
    def bao(self) -> OpenBao:
        assert self.openbao is not None, "the sandbox is not set up"
        return self.openbao

    @property
    def fake_lwa(self) -> FakeLwa:
        assert self.lwa is not None, "the sandbox is not set up"
        return self.lwa

    def _setup(self) -> None:
        from tests.openbao import start_openbao

        for path in [
            *HOST_PATHS,
            "/etc/nginx/sites-available",
            "/etc/nginx/sites-enabled",
            "/var/log/nginx",
            f"/etc/letsencrypt/live/{PUBLIC_HOST}",
        ]:
            Path(str(self.root) + path).mkdir(parents=True, exist_ok=True)
        for sub in ("home", "journal", "run", "out", "stubs", "nginx"):
            (self.root / sub).mkdir(exist_ok=True)

        self._sql(f'CREATE DATABASE "{self.database}"')
        self.openbao = start_openbao(self.tmp / "openbao")
        self.bao.client().secrets.kv.v2.create_or_update_secret(
            path=APP_SECRET_PATHS["external_test"], secret=ECOMLG_APP, mount_point=self.bao.mount
        )
        self.lwa = FakeLwa()
        tools = {
            name: find_tool(name)
            for name in ("nginx", "logrotate", "systemd-analyze", "curl", "git", "install", "openssl")
        }
        from tests.openbao import bao_binary

        tools["bao"] = bao_binary()
        tools["python"] = sys.executable
        self.config = Config(
            root=str(self.root),
            app_port=free_port(),
            http_port=free_port(),
            https_port=free_port(),
            lwa_port=self.fake_lwa.port,
            vault_addr=self.bao.addr,
            vault_token=self.bao.root_token,
            database_url=_with_database(self.admin_url, self.database),
            tools=tools,
            fill={
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
                "DATABASE_URL": _with_database(self.admin_url, self.database),
                "JWT_SECRET": secrets.token_urlsafe(48),
                "KEYBUZZ_SUPERADMIN_PASSWORD": secrets.token_urlsafe(18),
                "VAULT_ADDR": self.bao.addr,
                "VAULT_TOKEN": self.bao.root_token,
                "KEYBUZZ_AI_API_KEY": "sk-sandbox-" + secrets.token_hex(8),
                "METRICS_TOKEN": secrets.token_hex(32),
            },
        )
        (self.root / "sandbox.json").write_text(json.dumps(self.cfg.__dict__, indent=1))
        for name in (
            "sudo",
            "useradd",
            "install",
            "git",
            "nano",
            "vault",
            "curl",
            "systemctl",
            "journalctl",
            "systemd-analyze",
            "logrotate",
            "nginx",
        ):
            stub = self.root / "stubs" / name
            stub.write_text(
                f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} "
                f'-m tests.ops_deploy.doc_runner stub {name} "$@"\n'
            )
            stub.chmod(0o755)

    def _sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(_with_database(self.admin_url, "postgres"), autocommit=True) as conn:
            conn.execute(statement)

    def shell_env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.root / 'stubs'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            CONFIG_ENV: str(self.root / "sandbox.json"),
            # The sandbox's port instead of 4000 (gunicorn.conf.py reads it); pip's download cache.
            "GUNICORN_BIND": f"127.0.0.1:{self.cfg.app_port}",
            "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }

    def close(self) -> None:
        for pid_file in sorted((self.root / "run").glob("*.pid")) if self.root.exists() else []:
            _stop_pid(int(pid_file.read_text().strip() or 0), timeout=45)
        nginx_pid = self.root / "nginx" / "nginx.pid"
        if nginx_pid.exists():
            _stop_pid(int(nginx_pid.read_text().strip() or 0), sig=signal.SIGQUIT, timeout=10)
        if self.lwa is not None:
            self.lwa.stop()
        if self.openbao is not None:
            self.openbao.stop()
        try:
            self._sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except Exception as exc:
            print(f"!! could not drop database {self.database}: {exc}", file=sys.stderr)
        if self.keep:
            print(f"sandbox kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stops one process we started (and its process group, when it leads one)."""
    if pid <= 1 or not _alive(pid):
        return
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    target = (lambda s: os.killpg(group, s)) if group == pid else (lambda s: os.kill(pid, s))
    try:
        target(sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            target(signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- The shell ------------------------------------------------------------------------------------


class Shell:
    """One bash for the whole doc: variables, the working directory and background jobs carry
    from block to block, as in the operator's terminal. Each block runs with `set -euo pipefail`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.out = sandbox.root / "out"
        self.count = 0
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            text=True,
            cwd=sandbox.root / "home",
            env=sandbox.shell_env(),
            stdout=open(self.out / "shell.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._send("set -euo pipefail\n")

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def run(self, code: str, *, isolated: bool = False, timeout: float = BLOCK_TIMEOUT) -> tuple[bool, str]:
        """(succeeded, output). `isolated` runs the block in a subshell whose failure does not end
        the shell (for optional blocks)."""
        self.count += 1
        script = self.out / f"block-{self.count:02d}.sh"
        log = self.out / f"block-{self.count:02d}.log"
        done = self.out / f"block-{self.count:02d}.done"
        script.write_text(code)
        source = f"( source {shlex.quote(str(script))} )" if isolated else f"source {shlex.quote(str(script))}"
        self._send(f"{source} < /dev/null > {shlex.quote(str(log))} 2>&1; echo $? > {shlex.quote(str(done))}\n")
        deadline = time.monotonic() + timeout
        while not done.exists():
            if self.process.poll() is not None:
                return False, log.read_text() if log.exists() else ""
            if time.monotonic() > deadline:
                self.close()
                return False, (log.read_text() if log.exists() else "") + f"\n!! timed out after {timeout:.0f}s"
            time.sleep(0.05)
        while not done.read_text().strip():
            time.sleep(0.01)
        return done.read_text().strip() == "0", log.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send("exit 0\n")
                if self.process.stdin is not None:
                    self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        # Background jobs of the doc (the test server of step 2) share the shell's process group.
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


# --- Directives -----------------------------------------------------------------------------------


def _env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("\"'")
    return values


def directive_amazon_consent(runner: Runner) -> None:
    """The seller confirms on Seller Central and Amazon redirects the browser to the callback."""
    config = runner.sandbox.cfg
    urls = re.findall(r'"authUrl": "([^"]+)"', "\n".join(runner.outputs))
    if not urls:
        raise DocError("amazon-consent: no authUrl in the outputs so far")
    url = urllib.parse.urlsplit(urls[-1])
    query = dict(urllib.parse.parse_qsl(url.query))
    if (
        not re.fullmatch(r"sellercentral(-[a-z]+)?\.amazon\.[a-z.]+", url.hostname or "")
        or url.path != "/apps/authorize/consent"
    ):
        raise DocError(f"amazon-consent: the authUrl is not a Seller Central consent page: {urls[-1]}")
    source = _env_file_values(config.app / ".env.production").get("AMAZON_SPAPI_APP_SOURCE", "external_test")
    app = runner.sandbox.bao.client().secrets.kv.v2.read_secret_version(
        path=APP_SECRET_PATHS[source], mount_point=runner.sandbox.bao.mount, raise_on_deleted_version=True
    )["data"]["data"]
    if query.get("application_id") != app["application_id"]:
        raise DocError(
            f"amazon-consent: the consent URL names application {query.get('application_id')}, "
            f"not the {source} app's {app['application_id']}"
        )
    code = f"ANsandbox{secrets.token_hex(8)}"
    runner.sandbox.fake_lwa.codes[code] = (app["client_id"], app["client_secret"])
    callback = f"https://{PUBLIC_HOST}/api/v1/marketplaces/amazon/oauth/callback?" + urllib.parse.urlencode(
        {"spapi_oauth_code": code, "state": query["state"], "selling_partner_id": SELLER}
    )
    ok, output = runner.shell.run(f"CALLBACK_URL={shlex.quote(callback)}\n")
    if not ok:
        raise DocError(f"amazon-consent: could not set CALLBACK_URL: {output}")
    runner.log(f"   (seller consent played for the {source} app: CALLBACK_URL set)")


def directive_cron_tick(runner: Runner) -> None:
    """Every job of the installed /etc/cron.d files, once, as cron runs them."""
    from tests.ops_deploy.crontab import parse_cron_d

    config = runner.sandbox.cfg
    files = sorted(Path(config.root + "/etc/cron.d").iterdir())
    if not files:
        raise DocError("cron-tick: nothing installed in /etc/cron.d")
    for path in files:
        if "." in path.name:
            raise DocError(f"cron-tick: cron ignores /etc/cron.d/{path.name} (a dot in the name)")
        cron = parse_cron_d(path.read_text())
        for job in cron.jobs:
            env = {
                "HOME": config.root + "/home",
                "LOGNAME": "keybuzz",
                "USER": "keybuzz",
                "SHELL": "/bin/sh",
                "PATH": "/usr/bin:/bin",
                **cron.env,
            }
            command = config.to_sandbox(job.command)
            done = subprocess.run(
                [env.get("SHELL", "/bin/sh"), "-c", command],
                env=env,
                cwd=env["HOME"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            runner.log(f"   (cron: {job.command[:90]}… → exit {done.returncode})")
            if done.returncode != 0:
                raise DocError(
                    f"cron-tick: the job at /etc/cron.d/{path.name}:{job.line_no} exited "
                    f"{done.returncode}: {done.stdout}{done.stderr}"
                )


DIRECTIVES = {"amazon-consent": directive_amazon_consent, "cron-tick": directive_cron_tick}


# --- The run ----------------------------------------------------------------------------------------


class Runner:
    def __init__(self, sandbox: Sandbox, shell: Shell, *, verbose: bool) -> None:
        self.sandbox = sandbox
        self.shell = shell
        self.verbose = verbose
        self.outputs: list[str] = []
        self.warnings: list[str] = []

    def log(self, message: str) -> None:
        print(message, flush=True)

    def metrics_available(self) -> bool:
        app = self.sandbox.cfg.app
        done = subprocess.run(
            [str(app / ".venv" / "bin" / "python"), "manage.py", "help", "keybuzz_metrics"],
            cwd=app,
            capture_output=True,
            text=True,
            timeout=120,
            env={**self.sandbox.shell_env(), "PATH": "/usr/bin:/bin"},
        )
        return done.returncode == 0

    def run(self, items: list[Item]) -> None:
        last_output = None
        for item in items:
            first = item.text.strip().splitlines()[0] if item.text.strip() else ""
            if item.kind == "directive":
                self.log(f"-- line {item.line}: <!-- ci: {item.text} -->")
                DIRECTIVES[item.text](self)
                continue
            if item.kind == "expect":
                if last_output is None:
                    continue  # after a skipped optional block
                missing = match_expected(item.text, last_output)
                if missing:
                    raise DocError(
                        f"line {item.line}: expected output not found:\n  "
                        + "\n  ".join(missing)
                        + f"\n-- the block's output:\n{last_output}"
                    )
                continue
            code = self.sandbox.cfg.to_sandbox(item.text)
            started = time.monotonic()
            if item.kind == "metrics":
                if not self.metrics_available():
                    self.log(f"-- line {item.line} [metrics] skipped: no keybuzz_metrics command yet")
                    last_output = None
                    continue
                ok, output = self.shell.run(code, isolated=True)
                output = self.sandbox.cfg.from_sandbox(output)
                if not ok:
                    self.warnings.append(f"line {item.line} [metrics] failed:\n{output}")
                self.log(
                    f"-- line {item.line} [metrics] {'ok' if ok else 'FAILED (warning)'} "
                    f"{time.monotonic() - started:.1f}s: {first}"
                )
                if self.verbose:
                    self.log(output.rstrip())
                last_output = None
                continue
            timeout = SLOW_BLOCK_TIMEOUT if "pip install" in code else BLOCK_TIMEOUT
            ok, output = self.shell.run(code, timeout=timeout)
            output = self.sandbox.cfg.from_sandbox(output)
            self.outputs.append(output)
            self.log(
                f"-- line {item.line} [{item.kind}] {'ok' if ok else 'FAILED'} "
                f"{time.monotonic() - started:.1f}s: {first}"
            )
            if self.verbose:
                self.log(output.rstrip())
            if not ok:
                raise DocError(f"line {item.line}: the block failed:\n{item.text}\n-- output:\n{output}")
            last_output = output


def check(doc: Path = DOC, *, keep: bool = False, verbose: bool = False) -> int:
    items = parse_doc(doc.read_text())
    lint(items)
    started = time.monotonic()
    runs = sum(item.kind in ("run", "host", "metrics") for item in items)
    print(
        f"== {doc.relative_to(REPO)}: {runs} command blocks, {sum(i.kind == 'expect' for i in items)} expected outputs",
        flush=True,
    )
    with Sandbox(keep=keep) as sandbox:
        shell = Shell(sandbox)
        runner = Runner(sandbox, shell, verbose=verbose)
        try:
            runner.run(items)
        except DocError as exc:
            print(f"\n!! {doc.relative_to(REPO)}: {exc}", file=sys.stderr)
            journal = sandbox.cfg.journal("keybuzz-backend")
            if journal.exists():
                print(
                    "-- service journal (last 30 lines):\n"
                    + sandbox.cfg.from_sandbox("\n".join(journal.read_text().splitlines()[-30:])),
                    file=sys.stderr,
                )
            return 1
        finally:
            shell.close()
    for warning in runner.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"== {doc.relative_to(REPO)}: OK in {time.monotonic() - started:.0f}s", flush=True)
    return 0


# --- Stand-ins ----------------------------------------------------------------------------------------


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **(extra or {})}


def _exec(argv: list[str], env: dict[str, str] | None = None) -> None:
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env if env is not None else _clean_env())


def stub_sudo(config: Config, args: list[str]) -> int:
    """sudo [-u USER] [-E] [--] command: no user switch; the environment is reset as sudo does."""
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-u", "-g") and args:
            args.pop(0)
        elif option == "--":
            break
    if not args:
        print("usage: sudo command", file=sys.stderr)
        return 1
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "TERM",
        CONFIG_ENV,
        "GUNICORN_BIND",
        "PIP_CACHE_DIR",
        "PIP_DISABLE_PIP_VERSION_CHECK",
    )
    _exec(args, {k: os.environ[k] for k in keep if k in os.environ})
    return 0


def stub_useradd(config: Config, args: list[str]) -> int:
    with open(Path(config.root) / "useradd.log", "a") as log:
        log.write(" ".join(args) + "\n")
    return 0


def stub_install(config: Config, args: list[str]) -> int:
    kept = []
    while args:
        arg = args.pop(0)
        if arg in ("-o", "-g", "--owner", "--group") and args:
            args.pop(0)
        elif not arg.startswith(("--owner=", "--group=")):
            kept.append(arg)
    _exec([config.tools["install"], *kept])
    return 0


def stub_git(config: Config, args: list[str]) -> int:
    if not args or args[0] != "clone":
        _exec([config.tools["git"], *args])
    positional = [
        a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] not in ("--branch", "-b")
    ]
    dest = Path(positional[-1])
    if dest.exists() and any(dest.iterdir()):
        print(f"fatal: destination path '{dest}' already exists and is not an empty directory.", file=sys.stderr)
        return 128
    files = (
        subprocess.run(
            [config.tools["git"], "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    print(f"Cloning into '{dest}'... (sandbox: copied from the checkout)", file=sys.stderr)
    return 0


def stub_nano(config: Config, args: list[str]) -> int:
    """The operator's edit of step 1: every `***` value gets the sandbox's."""
    path = Path(args[-1])
    if path.name != ".env.production":
        print(f"sandbox nano only edits .env.production, not {path}", file=sys.stderr)
        return 1
    lines = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and key in config.fill:
            line = f"{key}={config.fill[key]}"
        lines.append(line)
    lines += [
        "",
        "# Added by the DEPLOY.md check (sandbox only): the fake Login with Amazon.",
        f"AMAZON_LWA_TOKEN_URL=http://127.0.0.1:{config.lwa_port}/auth/o2/token",
    ]
    path.write_text("\n".join(lines) + "\n")
    return 0


def stub_vault(config: Config, args: list[str]) -> int:
    if args and args[0] == "login":
        print("Success! You are now authenticated. (sandbox: vault login is a no-op)")
        return 0
    env = _clean_env(
        {
            "BAO_ADDR": os.environ.get("VAULT_ADDR", config.vault_addr),
            "BAO_TOKEN": os.environ.get("VAULT_TOKEN") or config.vault_token,
        }
    )
    _exec([config.tools["bao"], *args], env)
    return 0


def stub_curl(config: Config, args: list[str]) -> int:
    cert = Path(config.root) / "nginx" / "certs" / "fullchain.pem"
    routes = []
    for host in ("localhost", "127.0.0.1"):
        routes += ["--connect-to", f"{host}:4000:127.0.0.1:{config.app_port}"]
    routes += [
        "--connect-to",
        f"{PUBLIC_HOST}:443:127.0.0.1:{config.https_port}",
        "--connect-to",
        f"{PUBLIC_HOST}:80:127.0.0.1:{config.http_port}",
        "--noproxy",
        "*",
    ]
    if cert.exists():
        routes += ["--cacert", str(cert)]
    _exec([config.tools["curl"], *routes, *args])
    return 0


def _render_unit(config: Config, path: Path) -> Path:
    rendered = Path(config.root) / "run" / "rendered" / path.name
    rendered.parent.mkdir(parents=True, exist_ok=True)
    rendered.write_text(config.to_sandbox(path.read_text()))
    return rendered


def stub_systemd_analyze(config: Config, args: list[str]) -> int:
    if not args or args[0] != "verify":
        _exec([config.tools["systemd-analyze"], *args])
    units = [_render_unit(config, Path(a)) for a in args[1:] if not a.startswith("-")]
    done = subprocess.run(
        [config.tools["systemd-analyze"], "verify", *map(str, units)], capture_output=True, text=True, env=_clean_env()
    )
    output = (done.stdout + done.stderr).strip()
    if output:
        print(config.from_sandbox(output.replace(str(units[0].parent), "/etc/systemd/system")), file=sys.stderr)
    return 1 if output or done.returncode else 0


def stub_logrotate(config: Config, args: list[str]) -> int:
    import grp
    import pwd

    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    rendered_args = []
    for arg in args:
        if not arg.startswith("-") and Path(arg).is_file():
            text = config.to_sandbox(Path(arg).read_text())
            text = re.sub(r"(?m)^(\s*create \d+) keybuzz keybuzz", rf"\1 {user} {group}", text)
            text = re.sub(r"(?m)^(\s*su) \S+ \S+", rf"\1 {user} {group}", text)
            target = Path(config.root) / "run" / "rendered" / f"logrotate-{Path(arg).name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o644)
            arg = str(target)
        rendered_args.append(arg)
    _exec([config.tools["logrotate"], "-s", str(Path(config.root) / "run" / "logrotate.state"), *rendered_args])
    return 0


def _nginx(config: Config):
    from tests.ops_deploy.nginx_sandbox import prepare

    site = Path(config.root + "/etc/nginx/sites-enabled/keybuzz-backend")
    if not site.exists():
        raise SystemExit("nginx: [emerg] no site enabled at /etc/nginx/sites-enabled/keybuzz-backend")
    return prepare(
        config.tools["nginx"],
        Path(config.root) / "nginx",
        site.read_text(),
        http_port=config.http_port,
        https_port=config.https_port,
        upstream_port=config.app_port,
        static_dir=config.app / "var" / "static",
    )


def stub_nginx(config: Config, args: list[str]) -> int:
    if args != ["-t"]:
        print("sandbox nginx: only `nginx -t`", file=sys.stderr)
        return 1
    done = _nginx(config).test()
    sys.stderr.write(
        config.from_sandbox(
            done.stderr.replace(str(Path(config.root) / "nginx" / "nginx.conf"), "/etc/nginx/nginx.conf")
        )
    )
    return done.returncode


def _parse_unit(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _systemd_environment_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _service_pid(config: Config, unit: str) -> int:
    pid_file = Path(config.root) / "run" / f"{unit}.pid"
    if not pid_file.exists():
        return 0
    pid = int(pid_file.read_text().strip() or 0)
    return pid if pid and _alive(pid) else 0


def _service_start(config: Config, unit: str) -> int:
    unit_file = Path(config.root + f"/etc/systemd/system/{unit}.service")
    if not unit_file.exists():
        print(f"Failed to start {unit}.service: Unit {unit}.service not found.", file=sys.stderr)
        return 5
    if _service_pid(config, unit):
        return 0
    service = _parse_unit(config.to_sandbox(unit_file.read_text()))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": config.root + "/home",
        "USER": service.get("User", ["root"])[0],
        "LOGNAME": service.get("User", ["root"])[0],
    }
    for env_file in service.get("EnvironmentFile", []):
        optional = env_file.startswith("-")
        path = Path(env_file.lstrip("-"))
        if path.exists():
            env.update(_systemd_environment_file(path))
        elif not optional:
            print(f"Failed to load environment files: {env_file}", file=sys.stderr)
            return 1
    for assignment in service.get("Environment", []):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value
    env["GUNICORN_BIND"] = f"127.0.0.1:{config.app_port}"  # the sandbox's port 4000
    notify_path = Path(config.root) / "run" / f"{unit}.notify"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    if service.get("Type", ["simple"])[0] == "notify":
        env["NOTIFY_SOCKET"] = str(notify_path)
    journal = config.journal(unit)
    with open(journal, "a") as log:
        process = subprocess.Popen(
            shlex.split(service["ExecStart"][0]),
            cwd=service["WorkingDirectory"][0],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (Path(config.root) / "run" / f"{unit}.pid").write_text(str(process.pid))
    (Path(config.root) / "run" / f"{unit}.since").write_text(time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if "NOTIFY_SOCKET" in env:
        notify.settimeout(1)
        deadline = time.monotonic() + 90
        received = ""
        while "READY=1" not in received and time.monotonic() < deadline and process.poll() is None:
            try:
                received += notify.recv(4096).decode()
            except TimeoutError:
                pass
        notify.close()
        if "READY=1" not in received:
            print(
                f"Job for {unit}.service failed because the control process exited with error code.\n"
                f'See "systemctl status {unit}.service" and "journalctl -xeu {unit}.service" for details.',
                file=sys.stderr,
            )
            _stop_pid(process.pid, timeout=5)
            return 1
    return 0


def _service_stop(config: Config, unit: str) -> None:
    pid = _service_pid(config, unit)
    if pid:
        unit_file = Path(config.root + f"/etc/systemd/system/{unit}.service")
        timeout = float(_parse_unit(unit_file.read_text()).get("TimeoutStopSec", ["90"])[0])
        _stop_pid(pid, timeout=timeout)
    (Path(config.root) / "run" / f"{unit}.pid").unlink(missing_ok=True)


def _nginx_reload(config: Config) -> int:
    nginx = _nginx(config)
    pid_file = Path(config.root) / "nginx" / "nginx.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text().strip() or 0)):
        os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
        time.sleep(0.5)
        return 0
    test = nginx.test()
    if test.returncode != 0:
        sys.stderr.write(test.stderr)
        return 1
    log = open(Path(config.root) / "nginx" / "log" / "nginx.out", "ab")
    subprocess.Popen(nginx.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0 if pid_file.exists() else 1


def stub_systemctl(config: Config, args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    flags = [a for a in args if a.startswith("-")]
    if not words:
        return 1
    verb, units = words[0], [u.removesuffix(".service") for u in words[1:]]
    if verb == "daemon-reload":
        return 0
    if units == ["nginx"] and verb in ("reload", "restart", "start"):
        return _nginx_reload(config)
    if len(units) != 1:
        print(f"sandbox systemctl: {' '.join(args)} is not emulated", file=sys.stderr)
        return 1
    unit = units[0]
    if verb == "enable":
        print(
            f"Created symlink /etc/systemd/system/multi-user.target.wants/{unit}.service → "
            f"/etc/systemd/system/{unit}.service."
        )
        return _service_start(config, unit) if "--now" in flags else 0
    if verb == "start":
        return _service_start(config, unit)
    if verb == "stop":
        _service_stop(config, unit)
        return 0
    if verb == "restart":
        _service_stop(config, unit)
        return _service_start(config, unit)
    if verb == "reload":
        pid = _service_pid(config, unit)
        if pid:
            os.kill(pid, signal.SIGHUP)
        return 0 if pid else 1
    if verb == "is-active":
        active = bool(_service_pid(config, unit))
        print("active" if active else "inactive")
        return 0 if active else 3
    if verb == "status":
        unit_file = Path(config.root + f"/etc/systemd/system/{unit}.service")
        description = _parse_unit(unit_file.read_text()).get("Description", [unit])[0] if unit_file.exists() else unit
        pid = _service_pid(config, unit)
        since = Path(config.root) / "run" / f"{unit}.since"
        print(f"● {unit}.service - {description}")
        print(f"     Loaded: loaded (/etc/systemd/system/{unit}.service; enabled; preset: enabled)")
        if pid:
            print(f"     Active: active (running) since {since.read_text() if since.exists() else '?'}")
            print(f"   Main PID: {pid} (gunicorn)")
        else:
            print("     Active: inactive (dead)")
        journal = config.journal(unit)
        if journal.exists():
            print("\n" + "\n".join(config.from_sandbox(journal.read_text()).splitlines()[-10:]))
        return 0 if pid else 3
    print(f"sandbox systemctl: {verb} is not emulated", file=sys.stderr)
    return 1


def stub_journalctl(config: Config, args: list[str]) -> int:
    unit, lines = None, None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-u", "--unit") and rest:
            unit = rest.pop(0).removesuffix(".service")
        elif arg.startswith("--unit="):
            unit = arg.split("=", 1)[1].removesuffix(".service")
        elif arg in ("-n", "--lines") and rest:
            lines = int(rest.pop(0))
        elif arg in ("--since", "--until", "-p", "--priority") and rest:
            rest.pop(0)  # the sandbox's journal is today's, all priorities
        elif arg not in ("-f", "--follow", "--no-pager", "-e", "-x", "--no-hostname") and not arg.startswith(
            ("--since=", "--until=")
        ):
            print(f"sandbox journalctl: {arg} is not emulated", file=sys.stderr)
            return 1
    if unit is None:
        print("sandbox journalctl: give -u UNIT", file=sys.stderr)
        return 1
    journal = config.journal(unit)
    text = journal.read_text().splitlines() if journal.exists() else []
    if lines is not None:
        text = text[-lines:]
    print("\n".join(text))
    return 0


STUBS = {
    "sudo": stub_sudo,
    "useradd": stub_useradd,
    "install": stub_install,
    "git": stub_git,
    "nano": stub_nano,
    "vault": stub_vault,
    "curl": stub_curl,
    "systemd-analyze": stub_systemd_analyze,
    "logrotate": stub_logrotate,
    "nginx": stub_nginx,
    "systemctl": stub_systemctl,
    "journalctl": stub_journalctl,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stub"]:
        return STUBS[argv[1]](Config.load(), argv[2:])
    parser = argparse.ArgumentParser(description="Run docs/DEPLOY.md in a sandbox.")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--keep", action="store_true", help="Keep the sandbox directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="Print every block's output")
    options = parser.parse_args(argv)
    try:
        return check(options.doc.resolve(), keep=options.keep, verbose=options.verbose)
    except DocError as exc:
        print(f"!! {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
