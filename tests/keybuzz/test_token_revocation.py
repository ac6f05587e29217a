"""Tokens do not outlive what they stand for: a refresh token works once, logging out revokes it and
every access token of its session, and a new password invalidates every token issued before it."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from keybuzz.models import LoggedOutSession
from keybuzz.tokens import PASSWORD_CLAIM, TENANT_CLAIM, password_version_of
from tests.factories import PASSWORD, make_member

pytestmark = pytest.mark.django_db
TOKEN, REFRESH, LOGOUT, ME = "/api/v1/auth/token", "/api/v1/auth/token/refresh", "/api/v1/auth/logout", "/api/v1/me"


def obtain(member) -> dict:
    response = APIClient().post(TOKEN, {"username": member.user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def refresh(token: str):
    return APIClient().post(REFRESH, {"refresh": token}, format="json")


def me(access: str) -> int:
    return APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {access}").status_code


def test_a_refresh_token_is_used_up_and_replaced():
    pair = obtain(make_member())
    first = refresh(pair["refresh"])
    assert first.status_code == 200 and first["Cache-Control"] == "no-store"
    rotated = first.json()
    assert set(rotated) == {"access", "refresh"} and rotated["refresh"] != pair["refresh"]
    again = refresh(pair["refresh"])
    assert again.status_code == 401
    assert again.json() == {"code": "token_not_valid", "message": "Token is blacklisted"}
    assert refresh(rotated["refresh"]).status_code == 200  # the new one works, once
    assert me(rotated["access"]) == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_refreshes_racing_with_one_token_get_one_new_pair(requires_postgres):
    pair = obtain(make_member())
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def use_it() -> None:
        try:
            barrier.wait()
            codes.append(refresh(pair["refresh"]).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=use_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(codes) == [200, 401, 401, 401]


def test_logout_revokes_the_refresh_token_and_is_safe_to_repeat():
    pair = obtain(make_member())
    out = APIClient().post(LOGOUT, {"refresh": pair["refresh"]}, format="json")
    assert out.status_code == 204 and out["Cache-Control"] == "no-store"
    assert refresh(pair["refresh"]).status_code == 401
    assert APIClient().post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 204


def test_logout_ends_the_sessions_access_tokens_and_no_other_session():
    member = make_member()
    first = obtain(member)
    rotated = refresh(first["refresh"]).json()  # the same session goes on after a refresh
    other_device = obtain(member)
    assert me(first["access"]) == me(rotated["access"]) == me(other_device["access"]) == 200

    assert APIClient().post(LOGOUT, {"refresh": rotated["refresh"]}, format="json").status_code == 204

    for access in (first["access"], rotated["access"]):  # both issued before the logout, both unexpired
        response = APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")
        assert response.status_code == 401
        assert response.json() == {"code": "token_not_valid", "message": "This session was logged out: log in again."}
    assert refresh(rotated["refresh"]).status_code == 401
    assert me(other_device["access"]) == 200  # another login of the same user is another session
    assert me(refresh(other_device["refresh"]).json()["access"]) == 200
    assert LoggedOutSession.objects.count() == 1


def test_a_refresh_that_beat_the_logout_does_not_keep_the_session_alive():
    """The client refreshed with its token just before logging out with the same one: the logout
    finds it used up, and still ends the session the refresh's new tokens belong to."""
    pair = obtain(make_member())
    raced = refresh(pair["refresh"]).json()
    assert APIClient().post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 204
    assert me(raced["access"]) == 401
    assert refresh(raced["refresh"]).status_code == 401


def test_logout_forgets_sessions_whose_tokens_have_all_expired():
    member = make_member()
    stale = uuid.uuid4()
    kept_for = api_settings.REFRESH_TOKEN_LIFETIME + api_settings.ACCESS_TOKEN_LIFETIME
    LoggedOutSession.objects.create(session_id=stale, logged_out_at=timezone.now() - kept_for - timedelta(minutes=1))
    recent = LoggedOutSession.objects.create(session_id=uuid.uuid4(), logged_out_at=timezone.now() - kept_for / 2)

    APIClient().post(LOGOUT, {"refresh": obtain(member)["refresh"]}, format="json")

    left = set(LoggedOutSession.objects.values_list("session_id", flat=True))
    assert stale not in left and recent.session_id in left and len(left) == 2


def test_an_access_token_is_refused_at_logout_and_a_token_without_session_still_works():
    member = make_member()
    pair = obtain(member)
    response = APIClient().post(LOGOUT, {"refresh": pair["access"]}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "token_not_valid")
    assert me(pair["access"]) == 200
    # Tokens issued before sessions existed carry none: valid until they expire, as they were.
    legacy = RefreshToken.for_user(member.user)
    legacy[TENANT_CLAIM], legacy[PASSWORD_CLAIM] = str(member.tenant_id), password_version_of(member.user)
    assert me(str(legacy.access_token)) == 200
    assert refresh(str(legacy)).status_code == 200


@pytest.mark.parametrize(("body", "status"), [({}, 400), ({"refresh": "not-a-token"}, 401), ({"refresh": 5}, 401)])
def test_logout_with_nothing_usable_is_a_clear_error(body, status):
    response = APIClient().post(LOGOUT, body, format="json")
    assert response.status_code == status
    assert set(response.json()) >= {"code", "message"}


def test_a_new_password_invalidates_every_earlier_token():
    member = make_member()
    old = obtain(member)
    member.user.set_password("a-brand-new-password-42")
    member.user.save(update_fields=["password"])

    assert me(old["access"]) == 401
    refused = refresh(old["refresh"])
    assert refused.status_code == 401 and "password change" in refused.json()["message"]
    fresh = APIClient().post(
        TOKEN, {"username": member.user.username, "password": "a-brand-new-password-42"}, format="json"
    )
    assert me(fresh.json()["access"]) == 200


def test_create_tenant_and_ensure_superadmin_setting_a_password_revoke_tokens(settings):
    member = make_member()
    old = obtain(member)
    call_command(
        "create_tenant",
        member.tenant.slug,
        "--name",
        "Renamed",
        "--admin-username",
        member.user.username,
        "--admin-password",
        "rotated-by-the-operator-1",
        stdout=io.StringIO(),
    )
    assert me(old["access"]) == 401

    settings.KEYBUZZ_SUPERADMIN_USERNAME = member.user.username
    settings.KEYBUZZ_SUPERADMIN_PASSWORD = "rotated-again-by-ops-2"
    fresh = APIClient().post(
        TOKEN, {"username": member.user.username, "password": "rotated-by-the-operator-1"}, format="json"
    )
    call_command("ensure_superadmin", stdout=io.StringIO())
    assert me(fresh.json()["access"]) == 401


def test_the_same_password_set_again_keeps_tokens_valid():
    member = make_member()
    pair = obtain(member)
    call_command(
        "create_tenant",
        member.tenant.slug,
        "--name",
        "Same",
        "--admin-username",
        member.user.username,
        "--admin-password",
        PASSWORD,
        stdout=io.StringIO(),
    )
    assert me(pair["access"]) == 200
