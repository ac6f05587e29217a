"""The secret store on both backends; the Vault backend against a real OpenBao dev server."""

from __future__ import annotations

import json
import logging
import multiprocessing
import socket
import time
import types
import uuid

import hvac
import pytest
from cryptography.fernet import Fernet

import keybuzz.secrets
from keybuzz.secrets import (
    LocalSecretStore,
    SecretAccessDenied,
    SecretNotFound,
    SecretStoreError,
    SecretStoreUnavailable,
    VaultSecretStore,
    get_secret_store,
)
from tests.net import free_port
from tests.openbao import running_openbao

REFRESH_TOKEN = "Atzr|IwEBIA-refresh-token-value"

KEYBUZZ_POLICY = """
path "secret/data/keybuzz/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/keybuzz/*" { capabilities = ["read", "delete", "list"] }
"""


def unique_path() -> str:
    # The OpenBao server lives for the whole session: each test writes under its own prefix.
    return f"keybuzz/tests/{uuid.uuid4().hex}/amazon"


def assert_not_leaked(exc: pytest.ExceptionInfo, caplog: pytest.LogCaptureFixture, *secret_values: str) -> None:
    text = str(exc.value)
    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    for value in secret_values:
        assert value not in text
        assert value not in logged


@pytest.fixture(params=["local", "vault"])
def store(request):
    """The configured store, on the local backend and on the real OpenBao."""
    if request.param == "vault":
        request.getfixturevalue("vault_settings")
    return get_secret_store()


@pytest.fixture(scope="module")
def approle(openbao):
    """Enables AppRole once; returns a factory of roles limited to `secret/…/keybuzz/*`."""
    root = openbao.client()
    root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy("keybuzz-app", KEYBUZZ_POLICY)

    def make_role(*, token_ttl: str = "1h", token_max_ttl: str = "4h") -> tuple[str, str]:
        name = f"keybuzz-{uuid.uuid4().hex[:8]}"
        root.auth.approle.create_or_update_approle(
            name, token_policies=["keybuzz-app"], token_ttl=token_ttl, token_max_ttl=token_max_ttl
        )
        role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
        return role_id, secret_id

    return make_role


def approle_store(openbao, role_id: str, secret_id: str) -> VaultSecretStore:
    return VaultSecretStore(addr=openbao.addr, mount=openbao.mount, role_id=role_id, secret_id=secret_id)


@pytest.fixture
def clock(monkeypatch):
    """Moves the store's monotonic clock forward without sleeping: `clock.advance(seconds)`."""

    class Clock:
        offset = 0.0

        def advance(self, seconds: float) -> None:
            self.offset += seconds

    clock = Clock()
    # Only the store's view of time moves; hvac, requests and pytest keep the real clock.
    fake_time = types.SimpleNamespace(monotonic=lambda: time.monotonic() + clock.offset)
    monkeypatch.setattr(keybuzz.secrets, "time", fake_time)
    return clock


# --- Both backends ----------------------------------------------------------------------------


def test_write_read_overwrite_delete_round_trip(store):
    path = unique_path()
    store.write(path, {"refresh_token": REFRESH_TOKEN, "region": "eu"})
    assert store.read(path) == {"refresh_token": REFRESH_TOKEN, "region": "eu"}

    store.write(path, {"refresh_token": "second"})
    assert store.read(path) == {"refresh_token": "second"}

    store.delete(path)
    with pytest.raises(SecretNotFound):
        store.read(path)


def test_paths_are_independent_and_slashes_trimmed(store):
    base = unique_path()
    store.write(f"{base}/a", {"v": "a"})
    store.write(f"/{base}/b/", {"v": "b"})
    assert store.read(f"{base}/b") == {"v": "b"}
    store.delete(f"{base}/b")
    assert store.read(f"{base}/a") == {"v": "a"}


def test_delete_of_missing_path_is_not_an_error(store):
    store.delete(unique_path())


def test_missing_path_is_secret_not_found_with_the_runbook_message(store):
    path = unique_path()
    with pytest.raises(SecretNotFound) as exc:
        store.read(path)
    assert str(exc.value) == f"No credentials found: {path}"
    assert exc.value.path == path
    assert isinstance(exc.value, SecretStoreError)


@pytest.mark.parametrize("path", ["", "/", "../x", "keybuzz/../x", "keybuzz//x", "keybuzz/./x"])
def test_invalid_path_is_refused(store, path):
    with pytest.raises(ValueError, match="Invalid secret path"):
        store.read(path)
    with pytest.raises(ValueError, match="Invalid secret path"):
        store.write(path, {"v": 1})
    with pytest.raises(ValueError, match="Invalid secret path"):
        store.delete(path)


def test_ping_succeeds_on_a_healthy_store(store):
    store.ping()


# --- Configured instance ----------------------------------------------------------------------


def test_get_secret_store_follows_the_settings(request, settings, local_secret_store):
    local = get_secret_store()
    assert isinstance(local, LocalSecretStore)
    assert str(local.path) == local_secret_store
    assert get_secret_store() is local  # built once, so a Vault token is reused

    openbao = request.getfixturevalue("vault_settings")
    vault = get_secret_store()
    assert isinstance(vault, VaultSecretStore)
    assert vault.addr == openbao.addr
    assert vault.mount == "secret"

    # Any SECRETS_*/VAULT_* change drops the cached instance (Django's setting_changed signal).
    settings.VAULT_TIMEOUT = 2.0
    assert get_secret_store() is not vault

    settings.SECRETS_BACKEND = "local"
    assert isinstance(get_secret_store(), LocalSecretStore)


# --- Local backend ----------------------------------------------------------------------------


def test_local_store_is_encrypted_at_rest(local_secret_store):
    store = get_secret_store()
    store.write("keybuzz/amazon/tenant-1", {"refresh_token": REFRESH_TOKEN})

    on_disk = (store.path.read_text(), store.path.read_bytes())
    assert REFRESH_TOKEN not in on_disk[0]
    assert "refresh_token" not in on_disk[0]
    # Only the path is in clear, so the file can be inspected without the key.
    assert list(json.loads(on_disk[0])) == ["keybuzz/amazon/tenant-1"]
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_local_key_file_is_created_with_mode_0600_when_no_key_is_set(settings, local_secret_store):
    assert settings.SECRETS_LOCAL_KEY == ""
    store = get_secret_store()
    store.write("keybuzz/x", {"v": 1})

    key_file = store.key_path
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o777 == 0o600
    Fernet(key_file.read_text().strip().encode())  # a valid key
    # A new process (a new store instance) finds the same key.
    assert LocalSecretStore(path=store.path).read("keybuzz/x") == {"v": 1}


def test_local_store_with_a_configured_key_writes_no_key_file(settings, local_secret_store):
    key = Fernet.generate_key().decode()
    settings.SECRETS_LOCAL_KEY = key
    store = get_secret_store()
    store.write("keybuzz/x", {"v": 1})
    assert not store.key_path.exists()
    assert LocalSecretStore(path=store.path, key=key).read("keybuzz/x") == {"v": 1}


def test_local_wrong_key_is_access_denied(settings, local_secret_store, caplog):
    caplog.set_level(logging.DEBUG)
    settings.SECRETS_LOCAL_KEY = Fernet.generate_key().decode()
    get_secret_store().write("keybuzz/x", {"v": 1})

    wrong = Fernet.generate_key().decode()
    settings.SECRETS_LOCAL_KEY = wrong
    store = get_secret_store()
    with pytest.raises(SecretAccessDenied, match="cannot decrypt keybuzz/x") as exc:
        store.read("keybuzz/x")
    assert_not_leaked(exc, caplog, wrong)
    with pytest.raises(SecretAccessDenied):
        store.ping()  # the health check sees it too


def test_local_invalid_key_is_access_denied_with_a_clear_message(settings, local_secret_store, caplog):
    caplog.set_level(logging.DEBUG)
    settings.SECRETS_LOCAL_KEY = "not-a-fernet-key-but-a-secret"
    store = get_secret_store()
    for operation in (lambda: store.write("keybuzz/x", {"v": 1}), lambda: store.read("keybuzz/x"), store.ping):
        with pytest.raises(SecretAccessDenied) as exc:
            operation()
        assert str(exc.value) == ("SECRETS_LOCAL_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)")
        assert_not_leaked(exc, caplog, "not-a-fernet-key-but-a-secret")


def test_local_unwritable_directory_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = LocalSecretStore(path=blocker / "secrets.json")  # a file where the directory should be
    with pytest.raises(SecretStoreUnavailable, match="Local secret store"):
        store.write("keybuzz/x", {"v": 1})


WRITES_PER_PROCESS = 40


def _write_many(path: str, worker: int, barrier) -> None:
    store = LocalSecretStore(path=path)  # no key: both processes race to create the key file too
    barrier.wait(timeout=10)
    for i in range(WRITES_PER_PROCESS):
        store.write(f"keybuzz/worker-{worker}/{i}", {"worker": worker, "i": i})


def test_local_concurrent_processes_lose_nothing(local_secret_store):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_write_many, args=(local_secret_store, n, barrier)) for n in (0, 1)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=30)
        assert process.exitcode == 0

    store = LocalSecretStore(path=local_secret_store)
    for worker in (0, 1):
        for i in range(WRITES_PER_PROCESS):
            assert store.read(f"keybuzz/worker-{worker}/{i}") == {"worker": worker, "i": i}


# --- Vault backend against OpenBao --------------------------------------------------------------


def test_vault_root_token_round_trip_lands_in_kv_v2(openbao):
    store = VaultSecretStore(addr=openbao.addr, mount=openbao.mount, token=openbao.root_token)
    path = unique_path()
    store.write(path, {"refresh_token": REFRESH_TOKEN})

    # What another Vault client sees at secret/data/<path>: the store speaks plain KV v2.
    stored = openbao.client().secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"refresh_token": REFRESH_TOKEN}
    assert store.read(path) == {"refresh_token": REFRESH_TOKEN}

    store.delete(path)  # every version and the metadata, not only a soft delete
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.client().secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")


def test_vault_ignores_tokens_from_the_environment(openbao, approle, monkeypatch):
    # hvac falls back to $VAULT_TOKEN when given no token; an AppRole store must log in instead.
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    role_id, secret_id = approle()
    store = approle_store(openbao, role_id, secret_id)
    with pytest.raises(SecretAccessDenied):
        store.read("other/outside-policy")
    assert store._client.token != openbao.root_token


def test_vault_approle_works_inside_its_policy_and_is_denied_outside(settings, vault_settings, approle, caplog):
    caplog.set_level(logging.DEBUG)
    role_id, secret_id = approle()
    settings.VAULT_TOKEN = ""
    settings.VAULT_ROLE_ID = role_id
    settings.VAULT_SECRET_ID = secret_id
    store = get_secret_store()
    assert isinstance(store, VaultSecretStore)

    path = unique_path()
    store.write(path, {"refresh_token": REFRESH_TOKEN})
    assert store.read(path) == {"refresh_token": REFRESH_TOKEN}
    store.delete(path)
    store.ping()

    vault_settings.client().secrets.kv.v2.create_or_update_secret(
        path="other/app", secret={"v": 1}, mount_point="secret"
    )
    token = store._client.token
    for operation in (
        lambda: store.read("other/app"),
        lambda: store.write("other/app", {"v": 2}),
        lambda: store.delete("other/app"),
    ):
        with pytest.raises(SecretAccessDenied, match="refused access to other/app") as exc:
            operation()
        assert_not_leaked(exc, caplog, token, secret_id, role_id)
    # A policy denial is not mistaken for an expired token: no new login per refused call.
    assert store._client.token == token
    assert vault_settings.client().secrets.kv.v2.read_secret_version(
        path="other/app", mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"] == {"v": 1}


def test_vault_approle_with_wrong_credentials_is_access_denied(openbao, approle, caplog):
    caplog.set_level(logging.DEBUG)
    role_id, secret_id = approle()
    for bad_role, bad_secret in ((role_id, "wrong-secret-id"), ("wrong-role-id", secret_id)):
        store = approle_store(openbao, bad_role, bad_secret)
        for operation in (lambda s=store: s.read(unique_path()), store.ping):
            with pytest.raises(SecretAccessDenied, match="AppRole login") as exc:
                operation()
            assert_not_leaked(exc, caplog, secret_id, "wrong-secret-id")


def test_vault_renews_a_short_lived_token(openbao, clock, caplog):
    caplog.set_level(logging.INFO, logger="keybuzz.secrets")
    root = openbao.client()
    token = root.auth.token.create(ttl="3s", renewable=True, policies=["default"])["auth"]["client_token"]
    store = VaultSecretStore(addr=openbao.addr, token=token)
    store.ping()
    assert "last_renewal_time" not in root.auth.token.lookup(token)["data"]

    clock.advance(2.5)  # less than a third of the TTL left
    store.ping()

    assert root.auth.token.lookup(token)["data"].get("last_renewal_time")
    assert store._client.token == token
    assert "Vault token renewed for 3s" in caplog.text
    assert token not in caplog.text


def test_vault_static_token_past_its_max_ttl_keeps_working_until_it_expires(openbao, clock, caplog):
    root = openbao.client()
    token = root.auth.token.create(ttl="2s", explicit_max_ttl="2s", renewable=True, policies=["default"])["auth"][
        "client_token"
    ]
    store = VaultSecretStore(addr=openbao.addr, token=token)
    store.ping()

    time.sleep(1.3)  # the server now refuses (or caps) a renewal, yet the token is still valid
    clock.advance(1)
    store.ping()
    assert token not in caplog.text


def test_vault_does_not_renew_a_token_that_never_expires(openbao, clock, monkeypatch):
    store = VaultSecretStore(addr=openbao.addr, token=openbao.root_token)
    store.ping()
    monkeypatch.setattr(store._client.auth.token, "renew_self", lambda **kw: pytest.fail("renewed"))
    clock.advance(10 * 365 * 86400)
    store.ping()


def test_vault_approle_token_whose_ttl_ran_out_leads_to_a_fresh_login(openbao, approle):
    role_id, secret_id = approle(token_ttl="1s", token_max_ttl="1s")
    store = approle_store(openbao, role_id, secret_id)
    path = unique_path()
    store.write(path, {"v": 1})
    first = store._client.token

    time.sleep(1.3)  # really expired on the server
    with pytest.raises(hvac.exceptions.Forbidden):
        openbao.client(token=first).auth.token.lookup_self()
    assert store.read(path) == {"v": 1}
    assert store._client.token != first


def test_vault_approle_renewal_capped_by_max_ttl_logs_in_again(openbao, approle, clock):
    role_id, secret_id = approle(token_ttl="2s", token_max_ttl="2s")
    store = approle_store(openbao, role_id, secret_id)
    store.ping()
    first = store._client.token

    # A second on, the server grants less than the 2s TTL (or refuses, past max_ttl): either way
    # the store logs in afresh instead of renewing ever more often.
    time.sleep(1.1)
    clock.advance(0.5)
    store.ping()
    assert store._client.token != first


def test_vault_approle_token_revoked_early_is_replaced_once(openbao, approle):
    role_id, secret_id = approle()
    store = approle_store(openbao, role_id, secret_id)
    path = unique_path()
    store.write(path, {"v": 1})
    first = store._client.token

    openbao.client().auth.token.revoke(first)
    assert store.read(path) == {"v": 1}
    assert store._client.token != first


def test_vault_wrong_token_is_access_denied(openbao, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "s.WrongTokenThatMustNotLeak"
    store = VaultSecretStore(addr=openbao.addr, token=wrong)
    path = unique_path()
    for operation in (
        lambda: store.read(path),
        lambda: store.write(path, {"v": 1}),
        lambda: store.delete(path),
        store.ping,
    ):
        with pytest.raises(SecretAccessDenied, match="refused access") as exc:
            operation()
        assert_not_leaked(exc, caplog, wrong)


def test_vault_not_listening_is_unavailable_quickly(caplog):
    caplog.set_level(logging.DEBUG)
    addr = f"http://127.0.0.1:{free_port()}"
    store = VaultSecretStore(addr=addr, token="s.TokenForNothing", timeout=1)
    started = time.monotonic()
    for operation in (lambda: store.read("keybuzz/x"), store.ping):
        with pytest.raises(SecretStoreUnavailable) as exc:
            operation()
        assert str(exc.value) == f"Secret store unreachable at {addr}"
        assert_not_leaked(exc, caplog, "s.TokenForNothing")
    assert time.monotonic() - started < 2


def test_vault_that_does_not_answer_times_out(caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addr = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = VaultSecretStore(addr=addr, token="s.TokenForSilence", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SecretStoreUnavailable, match="timed out") as exc:
            store.ping()
        assert time.monotonic() - started < 2
        assert_not_leaked(exc, caplog, "s.TokenForSilence")


def test_vault_sealed_is_unavailable(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # A second server of its own: sealing the session's server would break every other test.
    with running_openbao(tmp_path / "sealed") as server:
        store = VaultSecretStore(addr=server.addr, token=server.root_token)
        path = unique_path()
        store.write(path, {"v": 1})
        store.ping()

        server.client().sys.seal()
        for operation in (
            lambda: store.read(path),
            lambda: store.write(path, {"v": 2}),
            lambda: store.delete(path),
            store.ping,
        ):
            with pytest.raises(SecretStoreUnavailable, match="sealed") as exc:
                operation()
            assert_not_leaked(exc, caplog, server.root_token)
        # A fresh store (first call = token lookup) reports it the same way.
        with pytest.raises(SecretStoreUnavailable, match="sealed"):
            VaultSecretStore(addr=server.addr, token=server.root_token).ping()


def test_vault_store_needs_an_address_and_credentials():
    with pytest.raises(ValueError, match="VAULT_ADDR"):
        VaultSecretStore(addr="", token="t")
    with pytest.raises(ValueError, match="token or an AppRole"):
        VaultSecretStore(addr="http://127.0.0.1:1", role_id="only-role")
