from __future__ import annotations

import pytest
from django.db import connection

# The real mail servers (Dovecot, an aiosmtpd sink) and their throwaway CA: tests.mail_servers.fixtures;
# a real S3-compatible server (moto) for attachments in object storage: tests.storage_server.
pytest_plugins = ["tests.mail_servers.fixtures", "tests.storage_server"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # PBKDF2's production cost is pointless in tests and dominates their run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def local_secret_store(settings, tmp_path):
    """Each test gets its own encrypted local store, so no test sees another's secrets."""
    settings.SECRETS_BACKEND = "local"
    settings.SECRETS_LOCAL_PATH = str(tmp_path / "secrets" / "secrets.json")
    settings.SECRETS_LOCAL_KEY = ""
    return settings.SECRETS_LOCAL_PATH


@pytest.fixture(autouse=True)
def local_media(settings, tmp_path):
    """Attachments go to the test's own folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def loopback_mail_servers(settings):
    """The tests' mail servers listen on 127.0.0.1, which production refuses by default."""
    settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS = True


@pytest.fixture
def requires_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgresql://…)")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    """A real OpenBao dev server on a free 127.0.0.1 port for the whole session (KV v2 at `secret/`).

    Yields a `tests.openbao.OpenBao`: `addr`, `root_token`, `mount`, and `client()` for an hvac
    client with the root token (or `client(token=…)` with another).
    """
    from tests.openbao import start_openbao

    server = start_openbao(tmp_path_factory.mktemp("openbao"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def vault_settings(settings, openbao):
    """Points the secret store at the session's OpenBao with its root token; returns the server."""
    settings.SECRETS_BACKEND = "vault"
    settings.VAULT_ADDR = openbao.addr
    settings.VAULT_TOKEN = openbao.root_token
    settings.VAULT_MOUNT = openbao.mount
    settings.VAULT_ROLE_ID = ""
    settings.VAULT_SECRET_ID = ""
    settings.VAULT_NAMESPACE = ""
    return openbao


AI_TEST_KEY = "sk-test-" + "k3y" * 8  # the shape of a LiteLLM virtual key


@pytest.fixture
def ai_gateway(settings, monkeypatch):
    """A local OpenAI-compatible gateway (tests.ai_fake.FakeGateway) on a free 127.0.0.1 port, and
    the settings that point KeyBuzz at it; retries wait next to nothing."""
    from tests.ai_fake import FakeGateway

    fake = FakeGateway()
    settings.KEYBUZZ_AI_BASE_URL = fake.base_url
    settings.KEYBUZZ_AI_API_KEY = AI_TEST_KEY
    settings.KEYBUZZ_AI_MODEL = "keybuzz-test-model"
    settings.KEYBUZZ_AI_TIMEOUT_SECONDS = 5.0
    settings.KEYBUZZ_AI_DAILY_LIMIT = 500
    monkeypatch.setattr("keybuzz.ai.client.BACKOFF_BASE", 0.01)
    try:
        yield fake
    finally:
        fake.stop()
