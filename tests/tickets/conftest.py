from __future__ import annotations

import pytest

from keybuzz.models import Role
from tests.factories import api_client, make_member, make_tenant


@pytest.fixture
def tenant(db):
    return make_tenant()


@pytest.fixture
def admin(tenant):
    return make_member(tenant, role=Role.ADMIN)


@pytest.fixture
def agent(tenant):
    return make_member(tenant, role=Role.AGENT)


@pytest.fixture
def admin_client(admin):
    return api_client(admin)


@pytest.fixture
def agent_client(agent):
    return api_client(agent)
