"""Agents' files for replies: uploaded to a ticket (type read from the bytes, 10 MB at most), named
by a reply (5 at most, this ticket's unused uploads only), and deleted by send_replies when no reply
took them within a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from keybuzz.models import Role
from tests.factories import api_client, make_member, make_tenant
from tests.tickets.factories import make_ticket
from tickets.delivery import replies_send_due
from tickets.models import Attachment, DeliveryStatus, TicketMessage

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TEXT = "Rücksendeetikett für Bestellung 302-1234567-1234567\n".encode()


@pytest.fixture(autouse=True)
def mock_channel(settings):
    settings.AMAZON_USE_MOCK = True
    settings.TICKETS_AMAZON_ADAPTER = ""


def upload(client, ticket_id: int, data: bytes, name: str = "photo.png"):
    """A multipart upload, as a browser sends it (the declared type is a lie the server ignores)."""
    file = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    return client.post(f"/api/v1/tickets/{ticket_id}/attachments/", {"file": file}, format="multipart")


def uploaded(client, ticket_id: int, data: bytes, name: str = "photo.png") -> int:
    response = upload(client, ticket_id, data, name)
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


@pytest.mark.parametrize(
    ("data", "name", "content_type"),
    [
        (PNG, "label.png", "image/png"),
        (JPEG, "damage.jpeg", "image/jpeg"),
        (b"GIF89a" + bytes(32), "anim.gif", "image/gif"),
        (PDF, "invoice.pdf", "application/pdf"),
        (TEXT, "label.txt", "text/plain"),
        (PNG, "disguised.pdf", "image/png"),  # the bytes decide, not the name
    ],
)
def test_an_upload_answers_its_id_name_type_and_size(admin_client, admin, data, name, content_type):
    ticket = make_ticket(admin.tenant)

    response = upload(admin_client, ticket.id, data, name)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {"id": body["id"], "filename": name, "contentType": content_type, "size": len(data)}
    stored = Attachment.objects.get(pk=body["id"])
    assert (stored.message_id, stored.ticket_id) == (None, ticket.id)
    with default_storage.open(stored.storage_name) as kept:
        assert kept.read() == data


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"MZ\x90\x00\x03" + bytes(100), "attachment_type_not_allowed"),  # a Windows program
        (b"PK\x03\x04" + bytes(100), "attachment_type_not_allowed"),  # a zip (or .docx)
        (b"<html>\x00</html>", "attachment_type_not_allowed"),
        (b"", "attachment_empty"),
    ],
)
def test_files_buyers_cannot_receive_are_refused(admin_client, admin, data, code):
    ticket = make_ticket(admin.tenant)

    response = upload(admin_client, ticket.id, data, "file.bin")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert not Attachment.objects.exists()


def test_a_file_over_10_mb_is_refused_with_413(admin_client, admin, settings):
    ticket = make_ticket(admin.tenant)

    response = upload(admin_client, ticket.id, b"a" * (10 * 1024 * 1024 + 1), "big.txt")

    assert response.status_code == 413
    assert response.json()["code"] == "attachment_too_large"
    assert response.json()["details"]["max_bytes"] == 10 * 1024 * 1024
    assert not Attachment.objects.exists()


def test_an_upload_without_a_file_field_is_a_400(admin_client, admin):
    ticket = make_ticket(admin.tenant)

    response = admin_client.post(f"/api/v1/tickets/{ticket.id}/attachments/", {"other": "x"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"


def test_an_upload_with_an_unknown_field_is_refused_and_nothing_is_stored(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    file = SimpleUploadedFile("photo.png", PNG, content_type="image/png")

    response = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/attachments/", {"file": file, "caption": "the parcel"}, format="multipart"
    )

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["caption"]
    assert not Attachment.objects.exists()


def test_uploading_to_another_tenants_ticket_is_a_404(admin_client):
    other = make_ticket(make_tenant())

    response = upload(admin_client, other.id, PNG)

    assert response.status_code == 404
    assert not Attachment.objects.exists()


def test_a_reply_carries_its_uploads_and_shows_them(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    ids = [uploaded(admin_client, ticket.id, PNG, "a.png"), uploaded(admin_client, ticket.id, PDF, "b.pdf")]

    response = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Here you are.", "attachments": ids}, format="json"
    )

    assert response.status_code == 201, response.content
    assert [(a["id"], a["filename"]) for a in response.json()["attachments"]] == [(ids[0], "a.png"), (ids[1], "b.pdf")]
    reply_id = response.json()["id"]
    assert set(Attachment.objects.filter(message_id=reply_id).values_list("id", flat=True)) == set(ids)
    download = admin_client.get(f"/api/v1/tickets/{ticket.id}/attachments/{ids[1]}")
    assert b"".join(download.streaming_content) == PDF


def test_a_reply_may_carry_five_files_not_six(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    ids = [uploaded(admin_client, ticket.id, PNG + bytes([i]), f"{i}.png") for i in range(6)]

    refused = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Photos", "attachments": ids}, format="json"
    )
    accepted = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Photos", "attachments": ids[:5]}, format="json"
    )

    assert refused.status_code == 400
    assert refused.json()["code"] == "too_many_attachments"
    assert accepted.status_code == 201
    assert TicketMessage.objects.filter(ticket=ticket, direction="OUTBOUND").count() == 1


def test_uploads_of_another_ticket_or_tenant_answer_404_and_queue_nothing(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    same_tenant_other_ticket = make_ticket(admin.tenant)
    other_tenant = make_member(make_tenant(), role=Role.ADMIN)
    theirs = make_ticket(other_tenant.tenant)
    foreign = [
        uploaded(admin_client, same_tenant_other_ticket.id, PNG),
        uploaded(api_client(other_tenant), theirs.id, PNG),
        999_999_999,
    ]

    for attachment_id in foreign:
        response = admin_client.post(
            f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Hi", "attachments": [attachment_id]}, format="json"
        )
        assert response.status_code == 404, attachment_id
        assert response.json()["code"] == "attachment_not_found"
        assert response.json()["details"] == {"attachments": [attachment_id]}
    assert not TicketMessage.objects.filter(ticket=ticket, direction="OUTBOUND").exists()


def test_an_upload_goes_with_one_reply_only(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    attachment_id = uploaded(admin_client, ticket.id, PNG)
    first = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "One", "attachments": [attachment_id]}, format="json"
    )

    second = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"body": "Two", "attachments": [attachment_id]}, format="json"
    )

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["code"] == "attachment_already_sent"


def test_notes_do_not_take_files(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    attachment_id = uploaded(admin_client, ticket.id, PNG)

    response = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/",
        {"type": "note", "body": "see photo", "attachments": [attachment_id]},
        format="json",
    )

    assert response.status_code == 400
    assert Attachment.objects.get(pk=attachment_id).message_id is None


def test_send_replies_deletes_uploads_no_reply_took_within_a_day(admin_client, admin):
    ticket = make_ticket(admin.tenant)
    used = uploaded(admin_client, ticket.id, PNG, "used.png")
    admin_client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"body": "x", "attachments": [used]}, format="json")
    stale = uploaded(admin_client, ticket.id, PDF, "stale.pdf")
    same_bytes_as_used = uploaded(admin_client, ticket.id, PNG, "again.png")  # shares the stored bytes
    fresh = uploaded(admin_client, ticket.id, TEXT, "fresh.txt")
    day_ago = timezone.now() - timedelta(hours=25)
    Attachment.objects.filter(pk__in=[used, stale, same_bytes_as_used]).update(created_at=day_ago)
    stale_name = Attachment.objects.get(pk=stale).storage_name
    shared_name = Attachment.objects.get(pk=used).storage_name

    summary = replies_send_due()

    assert summary.uploads_deleted == 2
    assert set(Attachment.objects.values_list("id", flat=True)) == {used, fresh}
    assert not default_storage.exists(stale_name)
    assert default_storage.exists(shared_name)  # the sent reply's file is still there
    assert TicketMessage.objects.get(attachments__id=used).delivery_status == DeliveryStatus.SENT
    assert replies_send_due().uploads_deleted == 0
