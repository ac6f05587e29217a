from __future__ import annotations

import pytest
from django.db import connection
from django.db.utils import OperationalError

import keybuzz
from tests.net import free_port


@pytest.mark.django_db
def test_health_ok_without_authentication(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "secrets": "ok"},
        "version": keybuzz.__version__,
    }


@pytest.mark.django_db
def test_health_503_names_the_secret_store_when_vault_is_down(client, settings):
    settings.SECRETS_BACKEND = "vault"
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"
    settings.VAULT_TOKEN = "s.health-test-token"
    settings.VAULT_TIMEOUT = 1
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["secrets"].startswith("error: Secret store unreachable")
    assert "s.health-test-token" not in response.content.decode()


@pytest.mark.django_db
def test_health_503_names_the_database_when_it_is_down(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    # The process boundary: the driver's connection cannot be opened.
    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "error: OperationalError", "secrets": "ok"}


@pytest.mark.django_db
def test_health_503_when_local_store_key_is_wrong(client, settings, local_secret_store):
    from keybuzz.secrets import get_secret_store

    get_secret_store().write("keybuzz/probe", {"v": 1})
    settings.SECRETS_LOCAL_KEY = "not-a-fernet-key"
    response = client.get("/health")
    assert response.status_code == 503
    assert "SECRETS_LOCAL_KEY" in response.json()["checks"]["secrets"]
