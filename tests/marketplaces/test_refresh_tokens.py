"""The one module that owns a seller's refresh token in the secret store."""

from __future__ import annotations

import pytest

from keybuzz.secrets import SecretStoreUnavailable, get_secret_store
from marketplaces.amazon.refresh_tokens import (
    RefreshTokenMissing,
    refresh_token_delete,
    refresh_token_path,
    refresh_token_read,
    refresh_token_store,
)

TOKEN = "Atzr|IwEBIRefreshTokensModuleTest-0123456789"


def test_path_is_per_tenant_and_seller():
    assert refresh_token_path(tenant_id="t-1", selling_partner_id="A1SELLER") == "keybuzz/tenants/t-1/amazon/A1SELLER"


def test_store_read_delete():
    path = refresh_token_path(tenant_id="t-1", selling_partner_id="A1SELLER")
    refresh_token_store(
        path=path, refresh_token=TOKEN, selling_partner_id="A1SELLER", app_source="keybuzz", region="EU"
    )
    assert refresh_token_read(path) == TOKEN
    stored = get_secret_store().read(path)
    assert (stored["selling_partner_id"], stored["app_source"], stored["region"]) == ("A1SELLER", "keybuzz", "EU")
    refresh_token_delete(path)
    refresh_token_delete(path)  # deleting twice is not an error
    with pytest.raises(RefreshTokenMissing, match="No credentials found: keybuzz/tenants/t-1/amazon/A1SELLER"):
        refresh_token_read(path)


def test_a_secret_without_a_token_is_missing_not_a_crash():
    get_secret_store().write("keybuzz/tenants/t-2/amazon/S", {"selling_partner_id": "S"})
    with pytest.raises(RefreshTokenMissing, match="no refresh_token at keybuzz/tenants/t-2/amazon/S"):
        refresh_token_read("keybuzz/tenants/t-2/amazon/S")


def test_a_store_that_cannot_answer_is_not_taken_for_a_missing_token(vault_settings, settings):
    settings.VAULT_ADDR = "http://127.0.0.1:9"  # discard port: nothing answers
    settings.VAULT_TIMEOUT = 1.0
    with pytest.raises(SecretStoreUnavailable):
        refresh_token_read("keybuzz/tenants/t-3/amazon/S")
