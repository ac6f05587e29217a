"""A persistent database connection the server has closed (a restart, a failover, an idle timeout,
`pg_terminate_backend`) is replaced at the next request instead of failing it, on the API's fast
reads as on Django's own queries (CONN_HEALTH_CHECKS, keybuzz/backends/postgresql)."""

from __future__ import annotations

import io
import sys

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory

from keybuzz.services import token_obtain
from tests.factories import PASSWORD, make_member, make_tenant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _get(app: WSGIHandler, path: str, token: str = "") -> str:
    """The status of a GET through Django's WSGI handler, as gunicorn calls it: request_started runs
    the connection checks (Django's test client turns them off)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}),
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        statuses.append(status)

    body = app(environ, start_response)  # type: ignore[arg-type]  # the WSGI callable, without write()
    b"".join(body)
    body.close()  # request_finished: what Django does after each response
    return statuses[0]


def _server_closes_the_connection() -> None:
    pid = connection.connection.info.backend_pid
    dsn = connection.connection.info.dsn  # psycopg leaves the password out of it
    password = connection.settings_dict.get("PASSWORD") or None
    with psycopg.connect(dsn, password=password, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


@pytest.mark.parametrize("path", ["/api/v1/tickets/", "/api/v1/tickets/stats/", "/health"])
def test_a_request_after_the_server_closed_the_connection_is_answered(requires_postgres, path):
    membership = make_member(make_tenant())
    token = token_obtain(
        username=membership.user.username,
        password=PASSWORD,
        tenant_slug=membership.tenant.slug,
        request=RequestFactory().post("/api/v1/auth/token"),
    ).access
    app = WSGIHandler()
    assert _get(app, path, token).startswith("200")
    old = connection.connection
    assert old is not None and not old.closed  # kept for the next request (CONN_MAX_AGE)

    _server_closes_the_connection()

    assert _get(app, path, token).startswith("200")
    assert connection.connection is not old and old.closed
