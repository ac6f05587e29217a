"""LWA access tokens for the poller: one refresh_token grant per connection, cached in memory
until shortly before `expires_in` ends (a loop-mode worker reuses them across runs)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from keybuzz.secrets import SecretStoreError
from marketplaces.amazon.app import AmazonApp, load_app_credentials
from marketplaces.amazon.lwa import LwaClient, LwaError, LwaRejected, get_lwa_client
from marketplaces.amazon.refresh_tokens import RefreshTokenMissing, refresh_token_read

# Refresh this long before Amazon's expiry, so a token never dies in the middle of a fetch.
EXPIRY_MARGIN_SECONDS = 120


class TokenRefreshFailed(Exception):
    """No access token this time (Amazon or the secret store failed); retried on a later run."""


class NeedsReauth(TokenRefreshFailed):
    """The refresh token is gone or refused (invalid_grant): only a new OAuth consent helps."""


@dataclass(frozen=True)
class _Cached:
    access_token: str
    refresh_before: float  # time.monotonic() deadline


class AccessTokenProvider:
    def __init__(self, *, lwa: LwaClient | None = None, app: AmazonApp | None = None) -> None:
        self._lwa = lwa
        self._app = app
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def access_token(self, *, connection_id: str, secret_ref: str) -> str:
        with self._lock:
            cached = self._cache.get(connection_id)
        if cached is not None and time.monotonic() < cached.refresh_before:
            return cached.access_token

        try:
            refresh_token = refresh_token_read(secret_ref)
        except RefreshTokenMissing as exc:
            raise NeedsReauth(f"Token refresh failed: {exc}") from None
        except SecretStoreError as exc:
            raise TokenRefreshFailed(f"Token refresh failed: {exc}") from None

        app = self._app or load_app_credentials()
        self._app = app
        lwa = self._lwa or get_lwa_client()
        try:
            tokens = lwa.refresh_access_token(
                refresh_token=refresh_token, client_id=app.client_id, client_secret=app.client_secret
            )
        except LwaRejected as exc:
            if exc.code == "invalid_grant":
                raise NeedsReauth(f"Token refresh failed: {exc}; the seller must reconnect Amazon") from None
            raise TokenRefreshFailed(f"Token refresh failed: {exc}") from None
        except LwaError as exc:
            raise TokenRefreshFailed(f"Token refresh failed: {exc}") from None

        lifetime = max(tokens.expires_in - EXPIRY_MARGIN_SECONDS, 0)
        with self._lock:
            self._cache[connection_id] = _Cached(tokens.access_token, time.monotonic() + lifetime)
        return tokens.access_token

    def forget(self, *, connection_id: str) -> None:
        """Drops the cached token (Amazon said it expired early): the next call refreshes it."""
        with self._lock:
            self._cache.pop(connection_id, None)
