"""Where the SP-API app comes from: env variables, else the secret store path of the app source."""

from __future__ import annotations

import logging

import pytest

from keybuzz.secrets import SecretAccessDenied, get_secret_store
from marketplaces.amazon.app import AppCredentialsMissing, load_app_credentials
from tests.marketplaces.conftest import AMAZON_OAUTH, APPLICATION_ID, CLIENT_ID, CLIENT_SECRET, START_URL

STORED = {
    "client_id": "amzn1.application-oa2-client.stored",
    "client_secret": "stored-client-secret-value-0123456789",
    "application_id": "amzn1.sp.solution.stored",
    "redirect_uri": "https://platform-api.keybuzz.io/api/v1/marketplaces/amazon/oauth/callback",
    "role_arn": "arn:aws:iam::123456789012:role/SellingPartnerAPIRole",
    "region": "eu-west-1",
    "app_source": "keybuzz",
}

pytestmark = AMAZON_OAUTH


def test_env_variables_win(amazon_app):
    amazon_app.AMAZON_SPAPI_REGION = "FE"
    amazon_app.AMAZON_SPAPI_DRAFT_APP = "true"
    app = load_app_credentials()
    assert (app.client_id, app.client_secret, app.application_id) == (CLIENT_ID, CLIENT_SECRET, APPLICATION_ID)
    assert app.region == "FE" and app.draft is True and app.origin == "env"
    assert CLIENT_SECRET not in repr(app)


def test_partial_env_is_an_error_naming_the_missing_variable(amazon_app):
    amazon_app.AMAZON_SPAPI_APPLICATION_ID = ""
    with pytest.raises(AppCredentialsMissing) as caught:
        load_app_credentials()
    assert "No credentials found" in str(caught.value)
    assert "AMAZON_SPAPI_APPLICATION_ID" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("external_test", "keybuzz/ai/amazon_spapi_app_temp"),
        ("keybuzz", "keybuzz/ai/amazon_spapi_app"),
    ],
)
def test_secret_store_path_per_app_source(no_app_env, source, path):
    no_app_env.AMAZON_SPAPI_APP_SOURCE = source
    get_secret_store().write(path, STORED)
    app = load_app_credentials()
    assert app.client_id == STORED["client_id"] and app.client_secret == STORED["client_secret"]
    assert app.application_id == STORED["application_id"]
    assert app.redirect_uri == STORED["redirect_uri"]
    assert app.region == "EU"  # eu-west-1
    assert app.app_source == source and app.origin == path and app.draft is False


def test_secret_store_draft_flag(no_app_env):
    get_secret_store().write("keybuzz/ai/amazon_spapi_app_temp", {**STORED, "draft": "true"})
    assert load_app_credentials().draft is True
    no_app_env.AMAZON_SPAPI_DRAFT_APP = "false"  # an explicit env setting wins
    assert load_app_credentials().draft is False


def test_missing_everywhere_names_the_path(no_app_env):
    with pytest.raises(AppCredentialsMissing) as caught:
        load_app_credentials()
    assert str(caught.value) == "No credentials found: keybuzz/ai/amazon_spapi_app_temp"


def test_stored_secret_without_application_id(no_app_env):
    get_secret_store().write(
        "keybuzz/ai/amazon_spapi_app_temp", {k: v for k, v in STORED.items() if k != "application_id"}
    )
    with pytest.raises(AppCredentialsMissing) as caught:
        load_app_credentials()
    assert "has no application_id" in str(caught.value)


def test_store_refusing_access_reads_as_no_credentials(no_app_env, monkeypatch):
    store = get_secret_store()

    def refuse(path):
        raise SecretAccessDenied("Secret store refused access")

    monkeypatch.setattr(store, "read", refuse)
    with pytest.raises(AppCredentialsMissing) as caught:
        load_app_credentials()
    assert str(caught.value).startswith("No credentials found: keybuzz/ai/amazon_spapi_app_temp")


def test_unknown_app_source(no_app_env):
    no_app_env.AMAZON_SPAPI_APP_SOURCE = "other"
    with pytest.raises(AppCredentialsMissing) as caught:
        load_app_credentials()
    assert "AMAZON_SPAPI_APP_SOURCE" in str(caught.value)


def test_start_answers_503_with_a_code_when_no_app(no_app_env, owner_client, caplog):
    caplog.set_level(logging.DEBUG)
    response = owner_client.post(START_URL, {}, format="json")
    assert response.status_code == 503
    assert response.json() == {
        "code": "credentials_missing",
        "message": "No credentials found: keybuzz/ai/amazon_spapi_app_temp",
    }


def test_start_reads_the_store_once_and_never_logs_the_secret(no_app_env, owner_client, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    store = get_secret_store()
    store.write("keybuzz/ai/amazon_spapi_app_temp", STORED)
    reads = []
    original = store.read
    monkeypatch.setattr(store, "read", lambda path: reads.append(path) or original(path))
    response = owner_client.post(START_URL, {"marketplace": "FR"}, format="json")
    assert response.status_code == 200
    assert reads == ["keybuzz/ai/amazon_spapi_app_temp"]
    assert STORED["client_secret"] not in caplog.text
    assert STORED["client_secret"] not in response.content.decode()
