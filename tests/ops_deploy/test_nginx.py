"""deploy/nginx-keybuzz.conf: `nginx -t` accepts it inside a minimal nginx.conf with a self-signed
certificate, and served for real it redirects http to https, terminates TLS, passes
X-Forwarded-Proto/-For and Host to the backend, serves /static/ from STATIC_ROOT and keeps query
strings out of its access log. The backend here is a small echo server; the DEPLOY.md check
puts the real gunicorn behind it."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.net import free_port
from tests.ops_deploy.conftest import find_tool
from tests.ops_deploy.nginx_sandbox import HOST, prepare


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def ports():
    return {"http_port": free_port(), "https_port": free_port()}


def test_nginx_t_accepts_the_snippet(tmp_path, deploy_file, ports):
    nginx = prepare(
        find_tool("nginx"),
        tmp_path,
        deploy_file("nginx-keybuzz.conf"),
        upstream_port=4000,
        static_dir=tmp_path / "static",
        keep_ipv6=True,
        **ports,
    )
    done = nginx.test()
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr


def test_nginx_t_catches_a_broken_snippet(tmp_path, deploy_file, ports):
    broken = deploy_file("nginx-keybuzz.conf").replace("proxy_set_header Host $host;", "proxy_set_header Host;")
    nginx = prepare(find_tool("nginx"), tmp_path, broken, upstream_port=4000, static_dir=tmp_path / "static", **ports)
    assert nginx.test().returncode != 0


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args], capture_output=True, text=True, timeout=30
    )


def test_served_for_real(tmp_path, deploy_file, ports, upstream):
    static = tmp_path / "static"
    (static / "admin" / "css").mkdir(parents=True)
    (static / "admin" / "css" / "base.css").write_text("body { color: black; }\n")
    nginx = prepare(
        find_tool("nginx"),
        tmp_path,
        deploy_file("nginx-keybuzz.conf"),
        upstream_port=upstream,
        static_dir=static,
        **ports,
    )
    https = [
        "--cacert",
        str(tmp_path / "certs" / "fullchain.pem"),
        "--connect-to",
        f"{HOST}:443:127.0.0.1:{ports['https_port']}",
    ]
    nginx.start()
    try:
        redirect = curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "--connect-to",
            f"{HOST}:80:127.0.0.1:{ports['http_port']}",
            f"http://{HOST}/health?x=1",
        )
        assert redirect.stdout == f"301 https://{HOST}/health?x=1", redirect.stderr

        proxied = curl(
            *https,
            "-D",
            str(tmp_path / "headers.txt"),
            "-H",
            "X-Forwarded-Proto: http",
            f"https://{HOST}/api/v1/marketplaces/amazon/oauth/callback?spapi_oauth_code=ANsecret&state=s",
        )
        assert proxied.returncode == 0, proxied.stderr
        seen = json.loads(proxied.stdout)
        assert seen["path"] == "/api/v1/marketplaces/amazon/oauth/callback?spapi_oauth_code=ANsecret&state=s"
        assert seen["headers"]["host"] == HOST
        assert seen["headers"]["x-forwarded-proto"] == "https"  # nginx's, not the client's
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert "strict-transport-security: max-age=31536000" in (tmp_path / "headers.txt").read_text().lower()

        css = curl(*https, f"https://{HOST}/static/admin/css/base.css")
        assert css.stdout == "body { color: black; }\n"
    finally:
        nginx.stop()
    access = (tmp_path / "log" / "keybuzz-backend.access.log").read_text()
    assert "/api/v1/marketplaces/amazon/oauth/callback" in access
    assert "ANsecret" not in access and "state=" not in access
