from __future__ import annotations

import pytest

# The Amazon connection's fixtures (an SP-API app in the settings, a fake LWA, an owner and their client).
from tests.marketplaces.conftest import amazon_app, fake_lwa, no_retry_sleep, owner, owner_client  # noqa: F401
from tests.openbao import running_openbao


@pytest.fixture
def own_openbao(tmp_path, settings):
    """An OpenBao server of the test's own (sealing the session's would break other tests), used as
    the secret store."""
    with running_openbao(tmp_path / "openbao") as server:
        settings.SECRETS_BACKEND = "vault"
        settings.VAULT_ADDR = server.addr
        settings.VAULT_TOKEN = server.root_token
        settings.VAULT_MOUNT = server.mount
        settings.VAULT_ROLE_ID = settings.VAULT_SECRET_ID = settings.VAULT_NAMESPACE = ""
        settings.VAULT_TIMEOUT = 2.0
        yield server
