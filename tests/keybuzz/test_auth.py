"""JWT: obtain, refresh, and every reason a token is refused."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.models import Role
from tests.factories import PASSWORD, api_client, make_member, make_tenant, make_user

pytestmark = pytest.mark.django_db


def obtain(**body):
    return APIClient().post("/api/v1/auth/token", body, format="json")


def claims(token: str) -> dict:
    return jwt.decode(token, settings.JWT_SECRET, algorithms=["HS256"])


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_obtain_returns_tokens_carrying_tenant_and_role():
    member = make_member(role=Role.AGENT)
    response = obtain(username=member.user.username, password=PASSWORD)
    assert response.status_code == 200
    access = claims(response.json()["access"])
    assert access["tenant_id"] == str(member.tenant_id)
    assert access["role"] == "agent"
    assert access["token_type"] == "access"
    assert claims(response.json()["refresh"])["token_type"] == "refresh"

    me = bearer(response.json()["access"]).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["tenant"]["slug"] == member.tenant.slug


def test_wrong_password_is_401_with_code():
    member = make_member()
    response = obtain(username=member.user.username, password="wrong")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


def test_missing_fields_are_400_with_code():
    response = obtain(username="someone")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert "password" in response.json()["message"]


def test_user_without_tenant_is_403():
    user = make_user()
    response = obtain(username=user.username, password=PASSWORD)
    assert response.status_code == 403
    assert response.json()["code"] == "no_tenant"


def test_several_tenants_need_the_tenant_slug():
    user = make_user()
    first, second = make_member(make_tenant("alpha"), user=user), make_member(make_tenant("beta"), user=user)
    response = obtain(username=user.username, password=PASSWORD)
    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"
    assert response.json()["details"]["tenants"] == ["alpha", "beta"]

    response = obtain(username=user.username, password=PASSWORD, tenant="beta")
    assert claims(response.json()["access"])["tenant_id"] == str(second.tenant_id)
    assert first.tenant_id != second.tenant_id

    response = obtain(username=user.username, password=PASSWORD, tenant="gamma")
    assert response.status_code == 403
    assert response.json()["code"] == "not_a_member"


def test_an_unknown_field_is_named_and_no_token_is_given():
    member = make_member(make_tenant("alpha"))
    response = obtain(username=member.user.username, password=PASSWORD, tenantSlug="alpha")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_input" and list(body["details"]) == ["tenantSlug"]
    assert "access" not in body and PASSWORD not in response.content.decode()


def test_refresh_gives_a_new_access_token_with_the_current_role():
    member = make_member(role=Role.AGENT)
    refresh = obtain(username=member.user.username, password=PASSWORD).json()["refresh"]
    member.role = Role.ADMIN
    member.save(update_fields=["role"])

    response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 200
    assert claims(response.json()["access"])["role"] == "admin"


def test_refresh_is_refused_once_the_membership_is_removed():
    member = make_member()
    refresh = obtain(username=member.user.username, password=PASSWORD).json()["refresh"]
    member.delete()
    response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "membership_revoked"


def test_an_access_token_is_not_a_refresh_token():
    member = make_member()
    access = obtain(username=member.user.username, password=PASSWORD).json()["access"]
    response = APIClient().post("/api/v1/auth/token/refresh", {"refresh": access}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


@pytest.mark.parametrize("used_before", [False, True])  # True: the process has verified it already
def test_expired_token_is_401(monkeypatch, used_before):
    member = make_member()
    access = obtain(username=member.user.username, password=PASSWORD).json()["access"]
    if used_before:
        assert bearer(access).get("/api/v1/me").status_code == 200
    later = timezone.now() + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] + timedelta(seconds=5)
    # The clock is the boundary: simplejwt reads it through this function.
    monkeypatch.setattr("rest_framework_simplejwt.tokens.aware_utcnow", lambda: later)
    response = bearer(access).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_token_signed_with_another_secret_is_401():
    member = make_member()
    payload = claims(obtain(username=member.user.username, password=PASSWORD).json()["access"])
    forged = jwt.encode(payload, "some-other-secret-that-is-long-enough-for-hs256", algorithm="HS256")
    response = bearer(forged).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


@pytest.mark.parametrize("header", ["Bearer not.a.jwt", "Bearer", "Bearer a b", "Token abc"])
def test_malformed_authorization_is_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert set(response.json()) >= {"code", "message"}


def test_token_without_tenant_claim_is_401():
    member = make_member()
    payload = claims(obtain(username=member.user.username, password=PASSWORD).json()["access"])
    del payload["tenant_id"]
    response = bearer(jwt.encode(payload, settings.JWT_SECRET, algorithm="HS256")).get("/api/v1/me")
    assert response.status_code == 401


def test_removed_member_is_refused_at_once():
    member = make_member()
    client = api_client(member)
    assert client.get("/api/v1/me").status_code == 200
    member.delete()
    response = client.get("/api/v1/me")
    assert response.status_code == 403
    assert response.json()["code"] == "membership_revoked"


def test_deactivated_tenant_is_refused_at_once():
    member = make_member()
    client = api_client(member)
    member.tenant.is_active = False
    member.tenant.save(update_fields=["is_active"])
    response = client.get("/api/v1/me")
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_inactive"
    assert obtain(username=member.user.username, password=PASSWORD).status_code == 403


def test_deactivated_user_is_401():
    member = make_member()
    client = api_client(member)
    member.user.is_active = False
    member.user.save(update_fields=["is_active"])
    assert client.get("/api/v1/me").status_code == 401


def test_no_token_is_401():
    response = APIClient().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_role_change_applies_without_a_new_token():
    member = make_member(role=Role.OWNER)
    client = api_client(member)
    member.role = Role.AGENT
    member.save(update_fields=["role"])
    assert client.get("/api/v1/me").json()["role"] == "agent"
