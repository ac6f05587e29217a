"""Runs deploy/nginx-keybuzz.conf in a throw-away nginx: a minimal nginx.conf around it, a
self-signed certificate for platform-api.keybuzz.io, paths moved under one directory, ports
chosen free. Used by tests/ops_deploy/test_nginx.py and the DEPLOY.md check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "platform-api.keybuzz.io"
CERT_DIR = f"/etc/letsencrypt/live/{HOST}/"


def self_signed_certificate(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={host}",
                "-addext",
                f"subjectAltName=DNS:{host}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return cert, key


def render_site(
    text: str,
    *,
    root: Path,
    http_port: int,
    https_port: int,
    upstream_port: int,
    static_dir: Path,
    keep_ipv6: bool = False,
) -> str:
    """The snippet with its host paths moved under `root` and its ports replaced."""
    text = text.replace(CERT_DIR, f"{root}/certs/")
    text = text.replace("/var/log/nginx/", f"{root}/log/")
    text = text.replace("/opt/keybuzz/keybuzz-backend/var/static/", f"{static_dir}/")
    text = text.replace("/var/www/letsencrypt", f"{root}/www")
    text = text.replace("server 127.0.0.1:4000;", f"server 127.0.0.1:{upstream_port};")
    text = re.sub(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{http_port};", text)
    text = re.sub(r"(?m)^(\s*)listen 443 ssl;", rf"\1listen 127.0.0.1:{https_port} ssl;", text)
    if not keep_ipv6:
        text = re.sub(r"(?m)^\s*listen \[::\]:\d+( ssl)?;\n", "", text)
    return text


def main_conf(root: Path, site: Path) -> str:
    """A minimal nginx.conf: what Debian's has around sites-enabled/, with every path under root."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the sandbox (mode 0700 dirs)
    return f"""{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/log/error.log warn;
events {{ worker_connections 64; }}
http {{
    types {{ text/html html; text/css css; application/javascript js; }}
    default_type application/octet-stream;
    access_log {root}/log/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {site};
}}
"""


@dataclass
class Nginx:
    binary: str
    root: Path
    conf: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def command(self, *args: str) -> list[str]:
        return [self.binary, "-p", f"{self.root}/", "-c", str(self.conf), "-e", f"{self.root}/log/error.log", *args]

    def test(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=60)

    def start(self, timeout: float = 15) -> None:
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"),
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "log" / "nginx.out", "wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.root / "nginx.pid").exists():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"nginx did not start: {(self.root / 'log' / 'nginx.out').read_text()}"
            f"{(self.root / 'log' / 'error.log').read_text()}"
        )

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def prepare(
    binary: str,
    root: Path,
    site_text: str,
    *,
    http_port: int,
    https_port: int,
    upstream_port: int,
    static_dir: Path,
    keep_ipv6: bool = False,
) -> Nginx:
    for sub in ("log", "tmp", "www", "sites"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    self_signed_certificate(root / "certs")
    site = root / "sites" / "keybuzz-backend"
    site.write_text(
        render_site(
            site_text,
            root=root,
            http_port=http_port,
            https_port=https_port,
            upstream_port=upstream_port,
            static_dir=static_dir,
            keep_ipv6=keep_ipv6,
        )
    )
    conf = root / "nginx.conf"
    conf.write_text(main_conf(root, site))
    return Nginx(binary=binary, root=root, conf=conf)
