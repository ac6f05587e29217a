"""Tenant isolation on the members endpoints: a token only ever sees its own tenant."""

from __future__ import annotations

import pytest

from keybuzz.models import Role
from tests.factories import api_client, make_member, make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants():
    tenant_a, tenant_b = make_tenant("tenant-a"), make_tenant("tenant-b")
    return (
        make_member(tenant_a, role=Role.OWNER),
        make_member(tenant_a, role=Role.AGENT),
        make_member(tenant_b, role=Role.OWNER),
    )


def test_members_list_shows_only_the_token_tenant(two_tenants):
    owner_a, agent_a, _ = two_tenants
    response = api_client(agent_a).get("/api/v1/members/")
    assert response.status_code == 200
    assert {row["id"] for row in response.json()} == {owner_a.user_id, agent_a.user_id}
    assert {row["role"] for row in response.json()} == {"owner", "agent"}


def test_member_of_another_tenant_is_404(two_tenants):
    owner_a, _, owner_b = two_tenants
    response = api_client(owner_a).get(f"/api/v1/members/{owner_b.user_id}/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api_client(owner_b).get(f"/api/v1/members/{owner_b.user_id}/").status_code == 200


def test_user_in_two_tenants_sees_the_tenant_of_its_token(two_tenants):
    owner_a, _, owner_b = two_tenants
    both = make_member(owner_b.tenant, user=owner_a.user, role=Role.AGENT)
    response = api_client(both).get("/api/v1/members/")
    assert {row["id"] for row in response.json()} == {owner_b.user_id, owner_a.user_id}
    assert api_client(both).get("/api/v1/me").json()["role"] == "agent"
