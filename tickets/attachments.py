"""Storing attachment bytes, through Django's storage API (`default_storage`).

Channels store a message's files while fetching (before the message is filed), then hand the
`StoredFile`s to `tickets.ingest`. A file's name in storage is derived from its tenant and the
SHA-256 of its content: the same file fetched twice (a re-fetched batch, a photo sent in two
messages) is stored once, and a crash between storing and filing leaves nothing but a file the next
fetch reuses.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from uuid import UUID

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage


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
    """Writes the bytes once per tenant and content; returns where they are."""
    sha256 = hashlib.sha256(data).hexdigest()
    name = storage_name_for(tenant_id=tenant_id, sha256=sha256, filename=filename)
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        # Another process may have written the same content meanwhile: the storage then picks
        # another name; both hold the same bytes.
        name = saved
    return StoredFile(filename=filename, content_type=content_type, size=len(data), sha256=sha256, storage_name=name)


class StoredFileMissing(Exception):
    """The row exists but storage has no bytes under its name (deleted by hand, a lost volume)."""


def attachment_open(storage_name: str) -> File:
    """The stored bytes, opened for reading (the caller closes them). Raises StoredFileMissing."""
    try:
        return default_storage.open(storage_name, "rb")
    except FileNotFoundError:
        raise StoredFileMissing(storage_name) from None
