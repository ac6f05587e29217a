"""GET/PATCH /api/v1/tenant/settings: any member reads, owners and admins change, input checked."""

from __future__ import annotations

import pytest

from keybuzz.models import Role, Tenant
from tests.factories import api_client, make_member, make_tenant

pytestmark = pytest.mark.django_db
URL = "/api/v1/tenant/settings"


@pytest.fixture
def tenant():
    return make_tenant()


def client_for(tenant, role):
    return api_client(make_member(tenant, role=role))


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.AGENT])
def test_every_member_reads_the_defaults(tenant, role):
    response = client_for(tenant, role).get(URL)
    assert response.status_code == 200
    assert response.json() == {"replyTone": "neutral", "signature": "", "aiEnabled": True}


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_change_them(tenant, role):
    client = client_for(tenant, role)
    response = client.patch(
        URL, {"replyTone": "formal", "signature": "  Ihr Team von Demo Store \n", "aiEnabled": False}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"replyTone": "formal", "signature": "Ihr Team von Demo Store", "aiEnabled": False}
    # A partial update leaves the rest alone.
    assert client.patch(URL, {"aiEnabled": True}, format="json").json() == {
        "replyTone": "formal",
        "signature": "Ihr Team von Demo Store",
        "aiEnabled": True,
    }
    assert client.get(URL).json()["replyTone"] == "formal"


def test_agents_cannot_change_them(tenant):
    response = client_for(tenant, Role.AGENT).patch(URL, {"aiEnabled": False}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"
    assert Tenant.objects.get(pk=tenant.pk).ai_enabled is True
    # The role first: an agent is not told how to fix an input it may not send at all.
    response = client_for(tenant, Role.AGENT).patch(URL, {"replyTone": "shouty"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "role_forbidden")


def test_a_change_stays_in_its_tenant(tenant):
    other = make_tenant()
    client_for(tenant, Role.OWNER).patch(URL, {"signature": "Tenant A"}, format="json")
    assert client_for(other, Role.OWNER).get(URL).json()["signature"] == ""


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"replyTone": "pirate"},
        {"replyTone": None},
        {"signature": "x" * 501},
        {"signature": None},
        {"signature": "nul\x00byte"},
        {"aiEnabled": "maybe"},
        {"aiEnabled": None},
        ["not", "an", "object"],
    ],
)
def test_invalid_input_is_a_400_in_the_apis_shape(tenant, payload):
    response = client_for(tenant, Role.OWNER).patch(URL, payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_input" and body["message"]


def test_without_a_token():
    assert api_client().get(URL).status_code == 401


def test_a_misspelt_setting_is_refused_and_nothing_changes(tenant):
    client = client_for(tenant, Role.OWNER)
    response = client.patch(URL, {"aiEnabled": False, "signatur": "Team Demo"}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["message"].startswith("signatur: Unknown field") and "signature" in body["message"]
    assert list(body["details"]) == ["signatur"]
    # The valid half of the request was not applied either.
    assert client.get(URL).json() == {"replyTone": "neutral", "signature": "", "aiEnabled": True}
