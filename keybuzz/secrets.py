"""The secret store: small JSON secrets (refresh tokens, app credentials) read and written by path.

Two backends behind one interface:
- `VaultSecretStore`: HashiCorp Vault (or OpenBao) KV v2 through hvac, with token or AppRole
  login and token renewal.
- `LocalSecretStore`: one file encrypted at rest with Fernet, the embedded development default.

Callers see three named errors, each with a message that is safe to log and never holds a secret:
`SecretNotFound` ("No credentials found: <path>"), `SecretAccessDenied`, `SecretStoreUnavailable`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import hvac
import hvac.exceptions
import requests
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

import keybuzz

logger = logging.getLogger(__name__)

USER_AGENT = f"KeyBuzz/{keybuzz.__version__}"


class SecretStoreError(Exception):
    """Base of the secret store's errors; `str()` is safe to log and to show an operator."""


class SecretNotFound(SecretStoreError):
    def __init__(self, path: str) -> None:
        super().__init__(f"No credentials found: {path}")
        self.path = path


class SecretAccessDenied(SecretStoreError):
    """The store answered but refused: wrong or expired token, or a policy without this path."""


class SecretStoreUnavailable(SecretStoreError):
    """The store cannot answer: unreachable, timed out, sealed or failing."""


class SecretStore(Protocol):
    def read(self, path: str) -> dict[str, Any]: ...

    def write(self, path: str, data: dict[str, Any]) -> None: ...

    def delete(self, path: str) -> None: ...

    def ping(self) -> None: ...


def _check_path(path: str) -> str:
    clean = path.strip("/") if isinstance(path, str) else ""
    # Empty and dot segments are refused rather than normalised: Vault would collapse them and the
    # local store would not, so one path could name two different secrets.
    if not clean or any(part in ("", ".", "..") for part in clean.split("/")):
        raise ValueError(f"Invalid secret path: {path!r}")
    return clean


# --- Vault ------------------------------------------------------------------------------------


class VaultSecretStore:
    """KV v2 on Vault or OpenBao. Thread-safe: one hvac client, token refreshed under a lock."""

    # Renew (or log in again) once less than this share of the token's TTL is left.
    RENEW_WHEN_LEFT = 1 / 3

    def __init__(
        self,
        *,
        addr: str,
        mount: str = "secret",
        token: str = "",
        role_id: str = "",
        secret_id: str = "",
        approle_mount: str = "approle",
        namespace: str = "",
        verify: bool | str = True,
        timeout: float = 5.0,
    ) -> None:
        if not addr:
            raise ValueError("Vault needs an address (VAULT_ADDR)")
        if not token and not (role_id and secret_id):
            raise ValueError("Vault needs a token or an AppRole role_id and secret_id")
        self.addr = addr
        self.mount = mount
        self._role_id = role_id
        self._secret_id = secret_id
        self._approle_mount = approle_mount
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        # token="" and not None: given None, hvac falls back to $VAULT_TOKEN or ~/.vault-token and
        # would silently use a token nobody configured instead of the AppRole login.
        self._client = hvac.Client(
            url=addr, token=token, namespace=namespace or None, verify=verify, timeout=timeout, session=session
        )
        self._lock = threading.Lock()
        # monotonic deadline after which the token must be renewed; None: never (or not known yet).
        self._renew_at: float | None = None
        self._ttl = 0  # the TTL a fresh token gets, to notice a renewal capped by the max TTL
        self._renewable = False
        self._token_checked = False

    # Token lifecycle -----------------------------------------------------------------------
    def _login_approle(self) -> None:
        try:
            auth = self._client.auth.approle.login(
                role_id=self._role_id, secret_id=self._secret_id, mount_point=self._approle_mount
            )["auth"]
        except hvac.exceptions.InvalidRequest:
            # Vault answers 400, not 403, to an unknown role_id or a wrong or expired secret_id.
            raise SecretAccessDenied(
                "Secret store refused the AppRole login (check VAULT_ROLE_ID and VAULT_SECRET_ID)"
            ) from None
        self._token_checked = True
        self._renewable = bool(auth.get("renewable"))
        self._ttl = int(auth["lease_duration"])
        self._schedule_renewal(self._ttl)
        logger.info("Vault AppRole login succeeded (token valid %ss)", self._ttl)

    def _schedule_renewal(self, ttl: int) -> None:
        # A TTL of 0 is a token that never expires (a root or periodic-less static token).
        self._renew_at = None if ttl <= 0 else time.monotonic() + ttl * (1 - self.RENEW_WHEN_LEFT)

    def _ensure_token(self) -> None:
        with self._lock:
            if not self._token_checked:
                if not self._client.token:
                    self._login_approle()
                else:
                    data = self._client.auth.token.lookup_self()["data"]
                    self._renewable = bool(data.get("renewable"))
                    self._ttl = int(data.get("creation_ttl") or 0)
                    # A static token that cannot be renewed is left alone: it is the operator's to rotate.
                    can_refresh = self._renewable or bool(self._role_id)
                    self._schedule_renewal(int(data.get("ttl") or 0) if can_refresh else 0)
                    self._token_checked = True
            if self._renew_at is not None and time.monotonic() >= self._renew_at:
                self._renew()

    def _renew(self) -> None:
        if self._renewable:
            try:
                granted = int(self._client.auth.token.renew_self()["auth"]["lease_duration"])
            except hvac.exceptions.VaultError as exc:
                if not self._role_id:
                    # Past its max TTL a static token cannot be renewed but still works until it
                    # expires; after that the calls themselves report the refusal.
                    self._renew_at = None
                    logger.warning("Vault token renewal refused (%s); the token will expire", type(exc).__name__)
                    return
            else:
                # Near its max TTL Vault grants less than a full TTL each time; an AppRole logs in
                # afresh then, rather than renewing ever more often until the token dies.
                if not (self._role_id and granted < self._ttl):
                    self._schedule_renewal(granted)
                    logger.info("Vault token renewed for %ss", granted)
                    return
        if self._role_id:
            self._login_approle()

    def _token_alive(self) -> bool:
        try:
            self._client.auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            return False
        return True

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except hvac.exceptions.InvalidPath:
            raise SecretNotFound(path) from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise SecretAccessDenied(
                f"Secret store refused access to {path} (check VAULT_TOKEN or the AppRole and its policy)"
            ) from None
        except (hvac.exceptions.VaultDown, hvac.exceptions.VaultNotInitialized):
            raise SecretStoreUnavailable(
                f"Secret store at {self.addr} is sealed, uninitialised or in standby"
            ) from None
        except (
            hvac.exceptions.InternalServerError,
            hvac.exceptions.BadGateway,
            hvac.exceptions.RateLimitExceeded,
        ) as exc:
            raise SecretStoreUnavailable(f"Secret store at {self.addr} failed ({type(exc).__name__})") from None
        except requests.exceptions.Timeout:
            raise SecretStoreUnavailable(f"Secret store at {self.addr} timed out") from None
        except requests.exceptions.RequestException:
            raise SecretStoreUnavailable(f"Secret store unreachable at {self.addr}") from None
        except hvac.exceptions.VaultError as exc:
            raise SecretStoreError(f"Secret store error on {path} ({type(exc).__name__})") from None

    def _call(self, path: str, operation: Callable[[], Any]) -> Any:
        """Runs `operation` with a valid token; an AppRole token that died early is replaced once."""
        with self._errors(path):
            self._ensure_token()
            try:
                return operation()
            except hvac.exceptions.Forbidden:
                # A token that still answers lookup-self was refused by policy: logging in again
                # would only pile up tokens on the server.
                if not self._role_id or self._token_alive():
                    raise
                with self._lock:
                    self._login_approle()
                return operation()

    # SecretStore ---------------------------------------------------------------------------
    def read(self, path: str) -> dict[str, Any]:
        path = _check_path(path)
        response = self._call(
            path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True
            ),
        )
        return dict(response["data"]["data"] or {})

    def write(self, path: str, data: dict[str, Any]) -> None:
        path = _check_path(path)
        self._call(
            path,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point=self.mount),
        )

    def delete(self, path: str) -> None:
        """Removes every version and the metadata; deleting a missing path is not an error."""
        path = _check_path(path)
        self._call(
            path, lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
        )

    def ping(self) -> None:
        """Raises unless the store is reachable, unsealed and accepts our token."""
        self._call("auth/token/lookup-self", lambda: self._client.auth.token.lookup_self())


# --- Local, encrypted file --------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Replaces `path` atomically by a file of mode 0600: a crash leaves the old file, never half a new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalSecretStore:
    """Secrets in one JSON file, each value encrypted with Fernet (AES-128-CBC + HMAC-SHA256).

    The key comes from `SECRETS_LOCAL_KEY` or, in development, from a key file created beside the
    store with mode 0600. Writes hold an exclusive `flock` and replace the file atomically, so
    concurrent processes (web server, poller) never lose each other's updates.
    """

    def __init__(self, *, path: str | Path, key: str = "") -> None:
        self.path = Path(path)
        self._key = key
        self._fernet: Fernet | None = None

    @property
    def key_path(self) -> Path:
        return self.path.with_name(self.path.name + ".key")

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            key = self._key or self._key_from_file()
            try:
                self._fernet = Fernet(key.encode())
            except ValueError:
                source = "SECRETS_LOCAL_KEY" if self._key else f"The key file {self.key_path}"
                raise SecretAccessDenied(
                    f"{source} is not a valid Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return self._fernet

    def _key_from_file(self) -> str:
        # Under the store's lock, so processes starting together agree on one key and none reads
        # a key file another is still writing.
        with self._locked(exclusive=True):
            try:
                if not self.key_path.exists():
                    _write_private(self.key_path, Fernet.generate_key().decode() + "\n")
                return self.key_path.read_text().strip()
            except OSError as exc:
                raise SecretStoreUnavailable(
                    f"Local secret store key file not usable: {self.key_path} ({exc.strerror})"
                ) from None

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(self.path.name + ".lock"), "a")
        except OSError as exc:
            raise SecretStoreUnavailable(f"Local secret store not writable: {self.path} ({exc.strerror})") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def _load(self) -> dict[str, str]:
        try:
            entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SecretStoreUnavailable(f"Local secret store unreadable: {self.path} ({type(exc).__name__})") from None
        if not isinstance(entries, dict):
            raise SecretStoreUnavailable(f"Local secret store unreadable: {self.path} (not a JSON object)")
        return entries

    def _save(self, entries: dict[str, str]) -> None:
        try:
            _write_private(self.path, json.dumps(entries, indent=1, sort_keys=True))
        except OSError as exc:
            raise SecretStoreUnavailable(f"Local secret store not writable: {self.path} ({exc.strerror})") from None

    @staticmethod
    def _decrypt(cipher: Fernet, path: str, token: str) -> dict[str, Any]:
        try:
            return json.loads(cipher.decrypt(token.encode()))
        except InvalidToken:
            raise SecretAccessDenied(
                f"Local secret store cannot decrypt {path}: the key is not the one it was written with"
                " (check SECRETS_LOCAL_KEY)"
            ) from None

    def read(self, path: str) -> dict[str, Any]:
        path = _check_path(path)
        cipher = self._cipher()
        with self._locked(exclusive=False):
            token = self._load().get(path)
        if token is None:
            raise SecretNotFound(path)
        return self._decrypt(cipher, path, token)

    def write(self, path: str, data: dict[str, Any]) -> None:
        path = _check_path(path)
        token = self._cipher().encrypt(json.dumps(data).encode()).decode()
        with self._locked(exclusive=True):
            entries = self._load()
            entries[path] = token
            self._save(entries)

    def delete(self, path: str) -> None:
        path = _check_path(path)
        with self._locked(exclusive=True):
            entries = self._load()
            if entries.pop(path, None) is not None:
                self._save(entries)

    def ping(self) -> None:
        """Raises unless the file is readable and the key decrypts what is in it."""
        cipher = self._cipher()
        with self._locked(exclusive=False):
            entries = self._load()
        for path, token in list(entries.items())[:1]:
            self._decrypt(cipher, path, token)


# --- Configured instance ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def get_secret_store() -> SecretStore:
    """The store the settings describe, built once per process (the Vault token is reused)."""
    if settings.SECRETS_BACKEND == "vault":
        return VaultSecretStore(
            addr=settings.VAULT_ADDR,
            mount=settings.VAULT_MOUNT,
            token=settings.VAULT_TOKEN,
            role_id=settings.VAULT_ROLE_ID,
            secret_id=settings.VAULT_SECRET_ID,
            approle_mount=settings.VAULT_APPROLE_MOUNT,
            namespace=settings.VAULT_NAMESPACE,
            verify=settings.VAULT_CACERT or True,
            timeout=settings.VAULT_TIMEOUT,
        )
    return LocalSecretStore(path=settings.SECRETS_LOCAL_PATH, key=settings.SECRETS_LOCAL_KEY)


@receiver(setting_changed)
def _reset_store(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("SECRETS_", "VAULT_")):
        get_secret_store.cache_clear()
