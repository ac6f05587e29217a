"""Agents' files for their replies: upload (checked, then stored like a channel's files), and the
clean-up of uploads no reply ever used.

An upload is an `Attachment` with no message yet; a reply that names it takes it
(`tickets.services.ticket_message_create`). The type is read from the bytes, never from the name or
the client's Content-Type: a file is accepted only when its content is one of `UPLOAD_TYPES`
(images, PDF, plain text: what marketplaces accept in a buyer's conversation).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath

from django.db import transaction
from django.utils import timezone

from keybuzz.errors import ApplicationError, NotFoundError
from keybuzz.models import Tenant
from tickets import conf
from tickets.attachments import attachment_delete, attachment_store
from tickets.models import Attachment, Ticket

logger = logging.getLogger("tickets.uploads")

UPLOAD_TYPES = ("image/jpeg", "image/png", "image/gif", "application/pdf", "text/plain")
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\"\\/:*?<>|]+")
MAX_FILENAME = 255


class UploadTooLargeError(ApplicationError):
    status_code = 413
    code = "attachment_too_large"


def upload_type(data: bytes) -> str | None:
    """The content type the bytes really are, among UPLOAD_TYPES; None for anything else."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    # Plain text: UTF-8 without control characters other than tabs, line and page breaks.
    return None if _NOT_TEXT.search(text) else "text/plain"


def upload_filename(name: str, content_type: str) -> str:
    """The last path component, without control or reserved characters, ≤ 255 characters, never
    empty (a mail client shows it as is, and storage names never derive from it)."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    base = _UNSAFE_NAME.sub("_", unicodedata.normalize("NFC", base)).strip(" .")
    if not base:
        base = "attachment" + {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif"}.get(
            content_type, {"application/pdf": ".pdf", "text/plain": ".txt"}.get(content_type, "")
        )
    if len(base) > MAX_FILENAME:
        stem, dot, extension = base.rpartition(".")
        keep = extension[:16] if dot and stem else ""
        base = base[: MAX_FILENAME - len(keep) - 1] + "." + keep if keep else base[:MAX_FILENAME]
    return base


def attachment_upload(*, tenant: Tenant, ticket_id: int, filename: str, data: bytes) -> Attachment:
    """Checks and stores an agent's file for a later reply on the ticket. Raises NotFoundError (no
    such ticket in the tenant), UploadTooLargeError, ApplicationError `attachment_type_not_allowed`
    or `attachment_empty`."""
    ticket = Ticket.objects.filter(tenant=tenant, pk=ticket_id).only("pk").first()
    if ticket is None:
        raise NotFoundError("No such ticket.")
    limit = conf.upload_max_bytes()
    if len(data) > limit:
        raise UploadTooLargeError(
            f"The file is larger than {limit // (1024 * 1024)} MB.",
            details={"max_bytes": limit, "size": len(data)},
        )
    if not data:
        raise ApplicationError("The file is empty.", code="attachment_empty")
    content_type = upload_type(data)
    if content_type is None:
        raise ApplicationError(
            "This type of file cannot be sent to buyers: use an image (JPEG, PNG, GIF), a PDF or a plain-text file.",
            code="attachment_type_not_allowed",
            details={"allowed": list(UPLOAD_TYPES)},
        )
    clean_name = upload_filename(filename, content_type)
    stored = attachment_store(tenant_id=tenant.pk, data=data, filename=clean_name, content_type=content_type)
    attachment = Attachment.objects.create(
        tenant=tenant,
        ticket=ticket,
        filename=stored.filename,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_name=stored.storage_name,
    )
    logger.info(
        "Upload %s stored on ticket %s for tenant %s (%s, %d bytes)",
        attachment.pk,
        ticket.pk,
        tenant.pk,
        content_type,
        stored.size,
    )
    return attachment


def uploads_purge_unused(*, now: datetime | None = None, limit: int = 500) -> int:
    """Deletes uploads no reply took within `TICKETS_UPLOAD_KEEP_HOURS` (a day), and their bytes
    unless another attachment holds the same content. Returns how many were deleted."""
    cutoff = (now or timezone.now()) - conf.upload_keep()
    stale = list(
        Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", "storage_name")[:limit]
    )
    if not stale:
        return 0
    with transaction.atomic():
        # A reply may take an upload while this runs: only rows still without a message go.
        deleted_ids = list(
            Attachment.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[pk for pk, _ in stale], message__isnull=True)
            .values_list("id", flat=True)
        )
        Attachment.objects.filter(pk__in=deleted_ids).delete()
    names = {name for pk, name in stale if pk in set(deleted_ids)}
    still_used = set(Attachment.objects.filter(storage_name__in=names).values_list("storage_name", flat=True))
    for name in sorted(names - still_used):
        attachment_delete(name)  # the row is gone either way; a leftover file is only space
    if deleted_ids:
        logger.info("Deleted %d upload(s) no reply used within %s", len(deleted_ids), conf.upload_keep())
    return len(deleted_ids)
