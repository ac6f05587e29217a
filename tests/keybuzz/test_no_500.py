"""No input produces a 500: what a black-box probe found, each a test. Every answer under /api/ has
the API's one JSON shape."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.tokens import password_version_of
from tests.factories import api_client, make_connection, make_member
from tests.tickets.factories import make_ticket

pytestmark = pytest.mark.django_db

DEEP = "[" * 1500 + "]" * 1500


def shape(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    return body


@pytest.fixture
def member():
    return make_member()


@pytest.fixture
def client(member):
    return api_client(member)


# Every endpoint that takes a body: (method, path, authenticated). The uploads take multipart only.
JSON_WRITES = [
    ("post", "/api/v1/auth/token", False),
    ("post", "/api/v1/auth/token/refresh", False),
    ("post", "/api/v1/auth/logout", False),
    ("post", "/api/v1/marketplaces/amazon/oauth/start", True),
    ("post", "/api/v1/marketplaces/amazon/disconnect", True),
    ("put", "/api/v1/marketplaces/amazon/connections/{connection}/mailbox", True),
    ("post", "/api/v1/tickets/{ticket}/messages/", True),
    ("post", "/api/v1/tickets/{ticket}/amazon/actions/unexpectedProblem", True),
    ("patch", "/api/v1/tickets/{ticket}/", True),
    ("post", "/api/v1/tickets/{ticket}/messages/{message}/translate", True),
    ("patch", "/api/v1/tenant/settings", True),
]
UPLOAD = ("post", "/api/v1/tickets/{ticket}/attachments/", True)


def write_target(client, member, path: str, authenticated: bool) -> tuple[APIClient, str]:
    """The caller and the URL for one of the writes, on a ticket of an Amazon order of the member's tenant."""
    ticket = make_ticket(member.tenant, connection_id=make_connection(member.tenant).id, order_id="302-1-2")
    url = path.format(ticket=ticket.id, message=ticket.messages.get().id, connection=ticket.connection_id)
    return (client if authenticated else APIClient()), url


@pytest.mark.parametrize(("method", "path", "authenticated"), JSON_WRITES)
def test_json_nested_deeper_than_python_recurses_is_a_400(client, member, method, path, authenticated):
    caller, url = write_target(client, member, path, authenticated)
    response = getattr(caller, method)(url, data=DEEP, content_type="application/json")
    assert response.status_code == 400
    assert shape(response)["code"] == "invalid_input"


@pytest.mark.parametrize(("method", "path", "authenticated"), [*JSON_WRITES, UPLOAD])
def test_every_write_names_a_field_it_does_not_take(client, member, method, path, authenticated):
    """DRF would drop the field and carry on with the defaults; every write endpoint refuses it."""
    caller, url = write_target(client, member, path, authenticated)
    body_format = "multipart" if (method, path, authenticated) == UPLOAD else "json"
    response = getattr(caller, method)(url, data={"bodyy": "x"}, format=body_format)
    assert response.status_code == 400, response.content
    body = shape(response)
    assert body["code"] == "invalid_input"
    assert body["message"].startswith("bodyy: Unknown field; this takes ")
    assert list(body["details"]) == ["bodyy"]


def cursor(value, last_id=5, ordering="-last_message_at") -> str:
    raw = json.dumps({"o": ordering, "v": value, "i": last_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        cursor("2026-11-20T10:00:00+16:00"),  # PostgreSQL refuses offsets over 15:59; Python does not
        cursor("2026-11-20T10:00:00-23:59"),
        cursor("9999-12-31T23:59:59-23:00"),  # past year 9999 once in UTC
        cursor("0001-01-01T00:00:00+23:00"),
        cursor("2026-11-20T10:00:00"),  # no offset
        cursor("2026-02-30T10:00:00+00:00"),
        cursor(12345),
        cursor("2026-11-20T10:00:00Z", last_id=2**70),
        cursor("2026-11-20T10:00:00Z", last_id=True),
        cursor(None, last_id="5"),
        base64.urlsafe_b64encode(DEEP.encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "%%%",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
def test_every_cursor_gives_a_page_or_invalid_cursor(client, member, token):
    make_ticket(member.tenant)
    response = client.get("/api/v1/tickets/", {"cursor": token})
    if response.status_code == 200:
        assert "results" in response.json()
    else:
        assert response.status_code == 400 and shape(response)["code"] == "invalid_cursor"


def test_a_cursor_with_a_far_offset_still_pages_correctly(client, member):
    now = timezone.now()
    older = make_ticket(member.tenant, at=now - timedelta(hours=3))
    make_ticket(member.tenant, at=now - timedelta(hours=1))
    # "Two hours ago" written with a +16:00 offset: the next page starts after it.
    at = (now - timedelta(hours=2)).astimezone(timezone.get_fixed_timezone(16 * 60))
    response = client.get("/api/v1/tickets/", {"cursor": cursor(at.isoformat(), last_id=10**9)})
    assert [row["id"] for row in response.json()["results"]] == [older.id]


@pytest.mark.parametrize("user_id", ["abc", "1.5", -1, 0, 2**70, True, [1], {"id": 1}, None, "١٢"])
def test_a_signed_token_with_a_nonsense_user_id_is_a_401(member, user_id):
    now = timezone.now()
    claims = {
        "token_type": "access",
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iat": int(now.timestamp()),
        "jti": "x" * 32,
        "user_id": user_id,
        "tenant_id": str(member.tenant_id),
        "role": "owner",
    }
    token = jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")
    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert shape(response)["code"] == "token_not_valid"
    refresh = dict(claims, token_type="refresh")
    answer = APIClient().post(
        "/api/v1/auth/token/refresh",
        {"refresh": jwt.encode(refresh, settings.JWT_SECRET, algorithm="HS256")},
        format="json",
    )
    assert answer.status_code == 401


@pytest.mark.parametrize("session_id", ["abc", 5, True, [1], {"id": 1}, "0" * 33, "\x00"])
def test_a_signed_token_with_a_nonsense_session_is_a_401_and_logout_ends_nothing(member, session_id):
    now = timezone.now()
    claims = {
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iat": int(now.timestamp()),
        "jti": "y" * 32,
        "user_id": member.user_id,
        "tenant_id": str(member.tenant_id),
        "pwv": password_version_of(member.user),
        "sid": session_id,
    }
    access = jwt.encode(dict(claims, token_type="access"), settings.JWT_SECRET, algorithm="HS256")
    response = APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert (response.status_code, shape(response)["code"]) == (401, "token_not_valid")
    refresh = jwt.encode(dict(claims, token_type="refresh"), settings.JWT_SECRET, algorithm="HS256")
    for path in ("/api/v1/auth/token/refresh", "/api/v1/auth/logout"):
        answer = APIClient().post(path, {"refresh": refresh}, format="json")
        assert (answer.status_code, shape(answer)["code"]) == (401, "token_not_valid")


def test_a_body_over_the_limit_is_a_json_413(client):
    big = '{"body": "' + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + '"}'
    response = APIClient().post("/api/v1/auth/token", data=big, content_type="application/json")
    assert response.status_code == 413
    assert shape(response)["code"] == "request_too_large"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tickets/abc/", "/api/v1/tickets/1.5/messages/", "/api/v1/members/me/", "/api/v1/nothing-here"],
)
def test_a_path_that_matches_no_route_is_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert shape(response)["code"] == "not_found"


def test_outside_the_api_django_pages_stay_html():
    response = APIClient().get("/admin/no-such-page/")
    assert response.status_code in (302, 404)
    assert not response["Content-Type"].startswith("application/json")
