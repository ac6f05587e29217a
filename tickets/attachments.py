"""Storing attachment bytes, through Django's storage API (`default_storage`).

Channels store a message's files while fetching (before the message is filed), then hand the
`StoredFile`s to `tickets.ingest`. A file's name in storage is derived from its tenant and the
SHA-256 of its content: the same file fetched twice (a re-fetched batch, a photo sent in two
messages) is stored once, and a crash between storing and filing leaves nothing but a file the next
fetch reuses.

Storage may be a local folder or S3-compatible object storage (keybuzz/storage.py): only the
storage API's `exists`, `save`, `open` and `delete` are used here, never a local path. A store that
cannot answer (unreachable, refusing our credentials, failing) raises `StorageUnavailable`: the API
answers 503 `storage_unavailable`, the poller records a connection failure and fetches again.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from uuid import UUID

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3UploadFailedError

from keybuzz.errors import ServiceUnavailableError
from keybuzz.secrets import SecretStoreError

logger = logging.getLogger("tickets.attachments")

# What a store that cannot answer raises: the disk (OSError), or S3 through botocore (a network
# error, a timeout, a refused signature or a 5xx are all its exceptions), and the transfers that
# boto3 and s3transfer run for a body (their own wrappers once their retries are spent), and the
# secret store when the bucket's key pair is read from it (ATTACHMENTS_S3_CREDENTIALS_PATH).
_STORAGE_ERRORS = (
    SecretStoreError,
    OSError,
    BotoCoreError,
    ClientError,
    Boto3Error,
    RetriesExceededError,
    S3DownloadFailedError,
    S3UploadFailedError,
)


class StorageUnavailable(ServiceUnavailableError):
    """The attachment store cannot answer now; the message names the failure's type only (a
    botocore message may quote a request, never needed by a caller)."""

    code = "storage_unavailable"

    def __init__(self, error: Exception) -> None:
        super().__init__(f"The file storage is unavailable, try again in a few minutes ({_reason(error)}).")


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        return f"{type(error).__name__} {error.response.get('Error', {}).get('Code', '')}".strip()
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return type(error).__name__


@dataclass(frozen=True)
class StoredFile:
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_name: str


def storage_name_for(*, tenant_id: UUID | str, sha256: str, filename: str) -> str:
    extension = mimetypes.guess_extension(mimetypes.guess_type(filename)[0] or "") or ""
    return f"attachments/{tenant_id}/{sha256[:2]}/{sha256}{extension}"


def attachment_store(*, tenant_id: UUID | str, data: bytes, filename: str, content_type: str) -> StoredFile:
    """Writes the bytes once per tenant and content; returns where they are. Raises StorageUnavailable."""
    sha256 = hashlib.sha256(data).hexdigest()
    name = storage_name_for(tenant_id=tenant_id, sha256=sha256, filename=filename)
    try:
        if not default_storage.exists(name):
            saved = default_storage.save(name, ContentFile(data))
            # Another process may have written the same content meanwhile: the storage then picks
            # another name; both hold the same bytes.
            name = saved
    except _STORAGE_ERRORS as exc:
        logger.warning("Attachment storage unavailable while storing %s: %s", name, _reason(exc))
        raise StorageUnavailable(exc) from None
    return StoredFile(filename=filename, content_type=content_type, size=len(data), sha256=sha256, storage_name=name)


class StoredFileMissing(Exception):
    """The row exists but storage has no bytes under its name (deleted by hand, a lost volume)."""


def attachment_open(storage_name: str) -> File:
    """The stored bytes, opened for reading (the caller closes them). Raises StoredFileMissing or
    StorageUnavailable.

    On S3 the whole object is fetched here, into a temporary file (in memory up to a few MB): a
    store failing mid-download then fails this call, and never a response whose headers are sent."""
    try:
        stored = default_storage.open(storage_name, "rb")
    except FileNotFoundError:
        raise StoredFileMissing(storage_name) from None
    except _STORAGE_ERRORS as exc:
        logger.warning("Attachment storage unavailable while opening %s: %s", storage_name, _reason(exc))
        raise StorageUnavailable(exc) from None
    try:
        stored.file  # noqa: B018 - on S3, the download; on disk, the open file
        return stored
    except FileNotFoundError:  # deleted between the lookup and the download
        stored.close()
        raise StoredFileMissing(storage_name) from None
    except _STORAGE_ERRORS as exc:
        stored.close()
        logger.warning("Attachment storage unavailable while reading %s: %s", storage_name, _reason(exc))
        raise StorageUnavailable(exc) from None


def attachment_read(storage_name: str) -> bytes:
    """All the stored bytes. Raises StoredFileMissing or StorageUnavailable."""
    with attachment_open(storage_name) as stored:
        return stored.read()


def attachment_delete(storage_name: str) -> bool:
    """Deletes the stored bytes (gone already is fine). False when the store could not answer:
    the caller's row is gone either way, and a leftover object is only space."""
    try:
        default_storage.delete(storage_name)
    except _STORAGE_ERRORS as exc:
        logger.warning("Could not delete stored bytes %s: %s", storage_name, _reason(exc))
        return False
    return True
