"""The S3 storage whose key pair is read from KeyBuzz's secret store (ATTACHMENTS_S3_CREDENTIALS_PATH).

Kept apart from keybuzz/storage.py, which the settings import before Django is configured.
"""

from __future__ import annotations

import threading
from typing import Any

from storages.backends.s3 import S3Storage

from keybuzz.secrets import SecretStoreUnavailable, get_secret_store


class SecretStoreS3Storage(S3Storage):
    """S3Storage with `access_key_id` and `secret_access_key` read from the secret store at
    `credentials_path` when the first connection is made, once per process: a rotated key is
    picked up by restarting the processes. Raises the secret store's errors (SecretNotFound,
    SecretStoreUnavailable…), which callers treat as the storage being unavailable."""

    def __init__(self, *, credentials_path: str, **settings: Any) -> None:
        self.credentials_path = credentials_path
        self._credentials_lock = threading.Lock()
        super().__init__(**settings)

    def _create_session(self) -> Any:
        with self._credentials_lock:
            if not getattr(self, "access_key", ""):  # set by S3Storage from its options (untyped)
                secret = get_secret_store().read(self.credentials_path)
                access_key, secret_key = secret.get("access_key_id"), secret.get("secret_access_key")
                if not (isinstance(access_key, str) and access_key and isinstance(secret_key, str) and secret_key):
                    raise SecretStoreUnavailable(
                        f"The secret at {self.credentials_path} needs access_key_id and secret_access_key"
                    )
                self.access_key, self.secret_key = access_key, secret_key
        return super()._create_session()
