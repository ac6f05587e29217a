from __future__ import annotations

import pytest
from django.db import connection


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


@pytest.fixture
def requires_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgresql://…)")
