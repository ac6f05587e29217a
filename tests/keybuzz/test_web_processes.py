"""Web processes are stateless: two real gunicorn processes (two hosts behind a load balancer) on
one PostgreSQL database and one S3-compatible bucket answer any request alike, whichever served
the previous one. A token issued by one works on the other, a logout on one revokes it on both,
failed logins counted by both lock the account on both, and a file uploaded through one downloads
through the other."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import global_settings

from tests.factories import PASSWORD, make_member
from tests.marketplaces.test_poller_processes import poller_env
from tests.net import HOST, free_port
from tests.storage_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server
from tests.tickets.factories import make_ticket

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)


class Web:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "keybuzz.wsgi:application",
                "--bind",
                f"{HOST}:{self.port}",
                "--workers",
                "1",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers (a 503 health is still an answer)
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not answer in time")

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str = "",
        body: Any = None,
        data: bytes = b"",
        headers: dict | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        payload = data
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=payload or None, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def two_webs(requires_postgres, tmp_path, settings, s3_server: S3Server) -> Iterator[tuple[Web, Web]]:
    env = poller_env(
        tmp_path,
        SECRETS_LOCAL_PATH=settings.SECRETS_LOCAL_PATH,
        MEDIA_ROOT=str(tmp_path / "media-not-used"),
        LOGIN_FAILURE_LIMIT="4",
        TRUSTED_PROXY_COUNT="0",
        ATTACHMENTS_S3_BUCKET=s3_server.bucket,
        ATTACHMENTS_S3_ENDPOINT_URL=s3_server.endpoint_url,
        ATTACHMENTS_S3_REGION=REGION,
        ATTACHMENTS_S3_ACCESS_KEY_ID=ACCESS_KEY_ID,
        ATTACHMENTS_S3_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        AWS_EC2_METADATA_DISABLED="true",
    )
    webs = (Web(env), Web(env))
    try:
        for web in webs:
            web.wait_ready()
        yield webs
    finally:
        for web in webs:
            web.stop()


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_two_web_processes_share_tokens_logins_lockouts_and_files(two_webs, s3_server: S3Server, tmp_path, settings):
    a, b = two_webs
    # The processes verify passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    member = make_member()
    ticket = make_ticket(member.tenant)

    # A token from A is accepted by B; a logout on B revokes the refresh token and the session's
    # access token on A (which had already checked that token once).
    login = {"username": member.user.username, "password": PASSWORD}
    status, _, raw = a.call("POST", "/api/v1/auth/token", body=login)
    assert status == 200, raw
    tokens = json.loads(raw)
    assert a.call("GET", "/api/v1/me", token=tokens["access"])[0] == 200
    status, _, raw = b.call("GET", "/api/v1/me", token=tokens["access"])
    assert status == 200, raw
    assert b.call("POST", "/api/v1/auth/logout", token=tokens["access"], body={"refresh": tokens["refresh"]})[0] == 204
    status, _, raw = a.call("POST", "/api/v1/auth/token/refresh", body={"refresh": tokens["refresh"]})
    assert status == 401, raw
    assert a.call("GET", "/api/v1/me", token=tokens["access"])[0] == 401
    status, _, raw = b.call("POST", "/api/v1/auth/token", body=login)
    tokens = json.loads(raw)

    # An agent's file uploaded through A is in the bucket and downloads through B.
    body, headers = multipart("label.png", PNG)
    status, _, raw = a.call(
        "POST", f"/api/v1/tickets/{ticket.id}/attachments/", token=tokens["access"], data=body, headers=headers
    )
    assert status == 201, raw
    attachment_id = json.loads(raw)["id"]
    assert len(s3_server.keys()) == 1
    status, response_headers, raw = b.call(
        "GET", f"/api/v1/tickets/{ticket.id}/attachments/{attachment_id}", token=tokens["access"]
    )
    assert (status, raw) == (200, PNG)
    assert response_headers["Content-Disposition"].startswith("attachment;")
    assert not (tmp_path / "media-not-used").exists()

    # Failed logins counted by both processes lock the account on both (LOGIN_FAILURE_LIMIT=4).
    victim = make_member()
    wrong = {"username": victim.user.username, "password": "wrong-password"}
    answers = [web.call("POST", "/api/v1/auth/token", body=wrong)[0] for web in (a, b, a, b)]
    assert answers == [401, 401, 401, 429]
    right = {"username": victim.user.username, "password": PASSWORD}
    status, _, raw = a.call("POST", "/api/v1/auth/token", body=right)
    assert status == 429 and json.loads(raw)["code"] == "too_many_attempts"
