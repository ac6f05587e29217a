"""Attachments in S3-compatible object storage (ATTACHMENTS_S3_BUCKET), against a real S3 server on
127.0.0.1 (moto's): the poller files buyers' files into the bucket, agents' uploads go there and
their purge deletes them, members download the exact bytes through the API, and nothing is ever
written under MEDIA_ROOT. A store that cannot be reached is a 503 `storage_unavailable` for the API
and a connection failure for the poller, which reads the same mails again once it answers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from keybuzz.secrets import get_secret_store
from keybuzz.storage import storages_setting
from marketplaces.models import Mailbox
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.mailbox.helpers import corpus_mail, mailbox_connect, poll
from tests.storage_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from tests.tickets.factories import make_ticket
from tests.tickets.test_attachments_api import PDF, PHOTOS, attachments_of, download_url, file_mails, ticket_of
from tests.tickets.test_reply_uploads import PNG, upload, uploaded
from tickets.delivery import replies_send_due
from tickets.models import Attachment, Ticket

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def mailbox_only(settings):
    """Only the relay mailbox reads messages, in one poller thread; replies go to the mock channel."""
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 1
    settings.TICKETS_AMAZON_ADAPTER = ""


def files_under_media_root() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_api_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def test_buyers_files_filed_by_the_poller_are_in_the_bucket_and_download_exactly(
    admin_client, admin, mailbox_user, s3_storage: S3Server
):
    connection = file_mails(mailbox_user, admin.tenant, corpus_mail(PHOTOS), corpus_mail(PDF))

    rows = list(Attachment.objects.filter(tenant=admin.tenant).order_by("id"))
    originals = attachments_of(corpus_mail(PHOTOS)) + attachments_of(corpus_mail(PDF))
    assert len(rows) == len(originals) >= 3
    # In the bucket, under the configured prefix, each object holding the exact bytes.
    assert s3_storage.keys() == sorted({f"kb-test/{row.storage_name}" for row in rows})
    for row in rows:
        assert hashlib.sha256(s3_storage.read(f"kb-test/{row.storage_name}")).hexdigest() == row.sha256
    assert files_under_media_root() == []

    for name in (PHOTOS, PDF):
        ticket = ticket_of(connection, name)
        listed = Attachment.objects.filter(ticket=ticket).order_by("id")
        for row, (_, content_type, data) in zip(listed, attachments_of(corpus_mail(name)), strict=True):
            response = admin_client.get(download_url(ticket.id, row.id))
            assert response.status_code == 200
            assert b"".join(response.streaming_content) == data
            assert response["Content-Type"] == content_type
            assert response["Content-Disposition"].startswith("attachment;")
            assert "no-store" in response["Cache-Control"]

    # Another tenant's member: the same ids are not found.
    outsider = api_client(make_member())
    row = rows[0]
    assert_api_error(outsider.get(download_url(row.ticket_id, row.id)), 404, "not_found")
    assert files_under_media_root() == []


def test_the_bucket_objects_are_private(admin, mailbox_user, s3_storage: S3Server):
    """No ACL grants anyone but the owner, and an unsigned request is refused."""
    file_mails(mailbox_user, admin.tenant, corpus_mail(PDF))
    (key,) = s3_storage.keys()
    grants = s3_storage.client.get_object_acl(Bucket=s3_storage.bucket, Key=key)["Grants"]
    assert all(grant["Grantee"].get("Type") == "CanonicalUser" for grant in grants), grants

    unsigned = requests.get(f"{s3_storage.endpoint_url}/{s3_storage.bucket}/{key}", timeout=5)
    assert unsigned.status_code == 403


def test_an_agents_upload_is_in_the_bucket_and_its_purge_deletes_it(admin_client, admin, s3_storage: S3Server):
    ticket = make_ticket(admin.tenant)
    upload_id = uploaded(admin_client, ticket.id, PNG, "label.png")
    row = Attachment.objects.get(pk=upload_id)
    key = f"kb-test/{row.storage_name}"
    assert s3_storage.keys() == [key]
    assert s3_storage.read(key) == PNG
    response = admin_client.get(download_url(ticket.id, upload_id))
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG

    Attachment.objects.filter(pk=upload_id).update(created_at=timezone.now() - timedelta(hours=25))
    assert replies_send_due().uploads_deleted == 1

    assert not Attachment.objects.filter(pk=upload_id).exists()
    assert s3_storage.keys() == []
    assert files_under_media_root() == []


def test_an_object_deleted_from_the_bucket_is_a_404_attachment_missing(admin_client, admin, s3_storage: S3Server):
    ticket = make_ticket(admin.tenant)
    upload_id = uploaded(admin_client, ticket.id, PNG, "label.png")
    (key,) = s3_storage.keys()
    s3_storage.client.delete_object(Bucket=s3_storage.bucket, Key=key)
    assert_api_error(admin_client.get(download_url(ticket.id, upload_id)), 404, "attachment_missing")


def test_the_key_pair_may_come_from_the_secret_store(admin_client, admin, s3_server: S3Server, settings):
    path = "keybuzz/storage/attachments_s3"
    settings.STORAGES = storages_setting(
        s3=s3_server.options(access_key_id="", secret_access_key="", credentials_path=path)
    )
    ticket = make_ticket(admin.tenant)
    # Not in the store yet: the storage cannot be used, and says so in the API's shape.
    assert_api_error(upload(admin_client, ticket.id, PNG), 503, "storage_unavailable")
    assert s3_server.keys() == []

    get_secret_store().write(path, {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY})
    upload_id = uploaded(admin_client, ticket.id, PNG, "label.png")
    assert len(s3_server.keys()) == 1
    response = admin_client.get(download_url(ticket.id, upload_id))
    assert response.status_code == 200 and b"".join(response.streaming_content) == PNG
    assert files_under_media_root() == []


def test_a_reply_carries_its_upload_read_back_from_the_bucket(admin_client, admin, s3_storage: S3Server, settings):
    ticket = make_ticket(admin.tenant)
    upload_id = uploaded(admin_client, ticket.id, PNG, "label.png")
    response = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Here it is", "attachments": [upload_id]}, format="json"
    )
    assert response.status_code == 201, response.content
    summary = replies_send_due()
    assert summary.sent == 1 and summary.ok
    assert len(s3_storage.keys()) == 1  # a sent reply's file stays


def test_a_storage_outage_during_a_download_is_a_503_never_a_500(admin_client, admin, s3_storage: S3Server):
    ticket = make_ticket(admin.tenant)
    upload_id = uploaded(admin_client, ticket.id, PNG, "label.png")
    s3_storage.stop()

    body = assert_api_error(admin_client.get(download_url(ticket.id, upload_id)), 503, "storage_unavailable")
    assert SECRET_ACCESS_KEY not in json.dumps(body)
    # An upload while it is down: the same answer, and no row without its bytes.
    body = assert_api_error(
        admin_client.post(
            f"/api/v1/tickets/{ticket.id}/attachments/",
            {"file": _png_file("other.png")},
            format="multipart",
        ),
        503,
        "storage_unavailable",
    )
    assert list(Attachment.objects.values_list("id", flat=True)) == [upload_id]

    # The purge does not fail the sender's run either: the row goes, the object is only left over.
    Attachment.objects.filter(pk=upload_id).update(created_at=timezone.now() - timedelta(hours=25))
    assert replies_send_due().uploads_deleted == 1

    s3_storage.start()
    assert len(s3_storage.keys()) == 1
    assert files_under_media_root() == []


def _png_file(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, PNG + b"2", content_type="image/png")


def test_a_storage_outage_while_the_poller_files_is_a_connection_failure_and_nothing_is_lost(
    admin, mailbox_user, s3_storage: S3Server
):
    mailbox_user.server.append(mailbox_user.username, corpus_mail(PHOTOS))
    connection, saved = mailbox_connect(mailbox_user, make_connection(admin.tenant))
    assert saved.check.ok, saved.check
    s3_storage.stop()

    code, summary = poll()
    assert code == 1, summary
    assert summary["failures"] == 1 and summary["new_messages"] == 0, summary
    mailbox = Mailbox.objects.get(connection_id=connection.id)
    assert mailbox.last_error_code == "storage_unavailable"
    assert "storage" in mailbox.last_error
    assert SECRET_ACCESS_KEY not in mailbox.last_error
    assert not Ticket.objects.filter(connection_id=connection.id).exists()

    s3_storage.start()
    code, summary = poll("--force")  # without --force the connection waits out its failure backoff
    assert code == 0 and summary["new_messages"] == 1, summary
    rows = Attachment.objects.filter(tenant=admin.tenant)
    assert rows.count() == len(attachments_of(corpus_mail(PHOTOS)))
    assert s3_storage.keys() == sorted({f"kb-test/{row.storage_name}" for row in rows})
    assert Mailbox.objects.get(connection_id=connection.id).last_error_code == ""
    assert files_under_media_root() == []


# --- Configuration ------------------------------------------------------------------------------


def _settings_of(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ATTACHMENTS_", "DATABASE_URL", "DEBUG"))}
    code = (
        "import django, json; django.setup(); from django.core.files.storage import storages; "
        "s = storages['default']; "
        "print(json.dumps({'backend': type(s).__name__, "
        "'bucket': getattr(s, 'bucket_name', None), 'location': getattr(s, 'location', None), "
        "'endpoint': getattr(s, 'endpoint_url', None), 'acl': getattr(s, 'default_acl', 'unset'), "
        "'overwrite': getattr(s, 'file_overwrite', None), 'params': getattr(s, 'object_parameters', None)}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "KEYBUZZ_ENV_FILE": "none", "DJANGO_SETTINGS_MODULE": "keybuzz.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_attachments_are_local_by_default_and_in_s3_when_a_bucket_is_set():
    local = _settings_of({})
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["backend"] == "FileSystemStorage"

    s3 = _settings_of(
        {
            "ATTACHMENTS_S3_BUCKET": "kb-attachments",
            "ATTACHMENTS_S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud",
            "ATTACHMENTS_S3_REGION": "fr-par",
            "ATTACHMENTS_S3_PREFIX": "/production/",
            "ATTACHMENTS_S3_ACCESS_KEY_ID": "SCWKEYID",
            "ATTACHMENTS_S3_SECRET_ACCESS_KEY": "scw-secret-value",
            "ATTACHMENTS_S3_SSE": "AES256",
        }
    )
    assert s3.returncode == 0, s3.stderr
    assert json.loads(s3.stdout) == {
        "backend": "S3Storage",
        "bucket": "kb-attachments",
        "location": "production",
        "endpoint": "https://s3.fr-par.scw.cloud",
        "acl": None,
        "overwrite": False,
        "params": {"ServerSideEncryption": "AES256"},
    }
    assert "scw-secret-value" not in s3.stdout + s3.stderr


def test_the_secret_store_path_replaces_the_key_pair_in_the_environment():
    result = _settings_of({"ATTACHMENTS_S3_BUCKET": "b", "ATTACHMENTS_S3_CREDENTIALS_PATH": "keybuzz/storage/s3"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "SecretStoreS3Storage"
    both = _settings_of(
        {
            "ATTACHMENTS_S3_BUCKET": "b",
            "ATTACHMENTS_S3_CREDENTIALS_PATH": "keybuzz/storage/s3",
            "ATTACHMENTS_S3_ACCESS_KEY_ID": "id",
            "ATTACHMENTS_S3_SECRET_ACCESS_KEY": "the-secret-value",
        }
    )
    assert both.returncode != 0 and "set one" in both.stderr
    assert "the-secret-value" not in both.stderr


def test_half_of_the_s3_credentials_stops_start_up_naming_both():
    result = _settings_of({"ATTACHMENTS_S3_BUCKET": "b", "ATTACHMENTS_S3_SECRET_ACCESS_KEY": "only-the-secret"})
    assert result.returncode != 0
    assert "ATTACHMENTS_S3_ACCESS_KEY_ID and ATTACHMENTS_S3_SECRET_ACCESS_KEY go together" in result.stderr
    assert "only-the-secret" not in result.stderr
