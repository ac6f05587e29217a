"""Buyers' attachments: filed by the real poller from the relay mailbox (test Dovecot), listed on
their message in the ticket detail, downloaded from `/api/v1/tickets/<id>/attachments/<id>` by the
tenant's members only, exactly as sent and never rendered inline."""

from __future__ import annotations

import email
import hashlib
import json
from email import policy
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from keybuzz.models import Role
from marketplaces.models import ExternalMessage
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.mailbox.helpers import corpus_mail, mailbox_connect, manifest, poll, relay_mail
from tests.tickets.factories import add_message, make_ticket
from tickets.attachments import attachment_store
from tickets.models import Attachment, Ticket, TicketMessage

pytestmark = pytest.mark.django_db

PHOTOS = "19-com-photo-attachments.eml"
PDF = "20-de-pdf-attachment.eml"


@pytest.fixture(autouse=True)
def mailbox_only(settings):
    """Only the relay mailbox reads messages; one poller worker (the test's transaction is not
    visible to other threads)."""
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 1


def file_mails(user, tenant, *raws: bytes):
    """Puts the mails in the user's INBOX, sets it as a new connection's mailbox, runs the poller."""
    for raw in raws:
        user.server.append(user.username, raw)
    connection, saved = mailbox_connect(user, make_connection(tenant))
    assert saved.check.ok, saved.check
    code, summary = poll()
    assert code == 0 and summary["failures"] == 0, summary
    assert summary["new_messages"] == len(raws), summary
    return connection


def attachments_of(raw: bytes) -> list[tuple[str | None, str, Any]]:
    """(filename, content type, bytes) of each attachment, as the stdlib reads the mail."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    return [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True)) for part in msg.iter_attachments()
    ]


def detail(client, ticket) -> dict:
    response = client.get(f"/api/v1/tickets/{ticket.id}/")
    assert response.status_code == 200, response.content
    return response.json()


def download_url(ticket_id, attachment_id) -> str:
    return f"/api/v1/tickets/{ticket_id}/attachments/{attachment_id}"


def ticket_of(connection, name: str) -> Ticket:
    return Ticket.objects.get(connection_id=connection.id, order_id=manifest()[name]["order_id"])


def stored_files() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["message"], body


@pytest.fixture
def filed(admin, mailbox_user):
    """The two corpus mails with attachments, filed through the poller in the admin's tenant."""
    return file_mails(mailbox_user, admin.tenant, corpus_mail(PHOTOS), corpus_mail(PDF))


# --- Listing and download -------------------------------------------------------------------


@pytest.mark.parametrize("name", [PHOTOS, PDF])
def test_detail_lists_the_attachments_and_each_downloads_exactly(admin_client, filed, name):
    ticket = ticket_of(filed, name)
    (message,) = detail(admin_client, ticket)["messages"]
    expected = manifest()[name]["attachments"]
    listed = message["attachments"]
    assert [{k: a[k] for k in ("filename", "contentType", "size")} for a in listed] == [
        {"filename": e["filename"], "contentType": e["content_type"], "size": e["size"]} for e in expected
    ]
    assert all(set(a) == {"id", "filename", "contentType", "size"} for a in listed)

    originals = attachments_of(corpus_mail(name))
    assert [(o[0], o[1]) for o in originals] == [(e["filename"], e["content_type"]) for e in expected]
    for item, (filename, content_type, data) in zip(listed, originals, strict=True):
        response = admin_client.get(download_url(ticket.id, item["id"]))
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == data
        assert len(data) == item["size"]
        assert response["Content-Type"] == content_type
        disposition = response["Content-Disposition"]
        assert disposition.startswith("attachment;")
        if filename.isascii():
            assert disposition == f'attachment; filename="{filename}"'
        else:  # RFC 6266 / 5987: the UTF-8 name, percent-encoded
            assert disposition == "attachment; filename*=utf-8''Rechnungsanschrift%20M%C3%BCller%20GmbH.pdf"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]
        assert "no-store" in response["Cache-Control"]

        row = Attachment.objects.get(pk=item["id"])
        assert row.tenant_id == filed.tenant_id and row.ticket_id == ticket.id
        assert row.message_id == message["id"]
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        # Stored under the tenant and the content's hash, never under the buyer's file name.
        assert row.storage_name.startswith(f"attachments/{filed.tenant_id}/")
        assert Path(filename).stem not in row.storage_name


def test_a_message_without_files_lists_none(admin, admin_client, mailbox_user):
    connection = file_mails(mailbox_user, admin.tenant, relay_mail(1))
    (ticket,) = Ticket.objects.filter(connection_id=connection.id)
    assert detail(admin_client, ticket)["messages"][0]["attachments"] == []
    assert stored_files() == []


# --- Who may download -----------------------------------------------------------------------


def test_only_the_tenants_members_may_download(admin, admin_client, filed):
    ticket = ticket_of(filed, PHOTOS)
    attachment = Attachment.objects.filter(ticket=ticket).first()
    other_ticket = ticket_of(filed, PDF)
    url = download_url(ticket.id, attachment.id)

    agent = api_client(make_member(admin.tenant, role=Role.AGENT))
    response = agent.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)

    outsider = api_client(make_member(role=Role.OWNER))
    assert_error(outsider.get(url), 404, "not_found")
    assert_error(outsider.get(f"/api/v1/tickets/{ticket.id}/"), 404, "not_found")
    # The right file under another ticket of the same tenant, or under no ticket at all.
    assert_error(admin_client.get(download_url(other_ticket.id, attachment.id)), 404, "not_found")
    assert_error(admin_client.get(download_url(999_999_999, attachment.id)), 404, "not_found")
    assert_error(admin_client.get(download_url(ticket.id, 999_999_999)), 404, "not_found")
    # Without a token.
    assert APIClient().get(url).status_code == 401


def test_a_file_of_another_tenant_is_not_found_even_with_its_own_ticket_id(admin_client, mailbox_user):
    """Tenant B's ids under tenant A's token: 404, whatever the pairing."""
    other = file_mails(mailbox_user, make_member().tenant, corpus_mail(PDF))
    attachment = Attachment.objects.get(tenant_id=other.tenant_id)
    assert_error(admin_client.get(download_url(attachment.ticket_id, attachment.id)), 404, "not_found")


def test_any_accept_header_still_gets_the_file(admin_client, filed):
    ticket = ticket_of(filed, PHOTOS)
    attachment = Attachment.objects.get(ticket=ticket, content_type="image/jpeg")
    for accept in ("image/png", "image/jpeg", "application/octet-stream", "text/html", "*/*"):
        response = admin_client.get(download_url(ticket.id, attachment.id), HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "image/jpeg"
        assert b"".join(response.streaming_content) == attachments_of(corpus_mail(PHOTOS))[0][2]


def _image_accept_errors(admin_client, connection):
    """(response, expected code) of each way a download can fail, asked for with `Accept: image/png`."""
    ticket = ticket_of(connection, PHOTOS)
    attachment = Attachment.objects.filter(ticket=ticket).first()
    missing = Attachment.objects.get(ticket=ticket_of(connection, PDF))
    (Path(django_settings.MEDIA_ROOT) / missing.storage_name).unlink()
    return [
        (admin_client.get(download_url(ticket.id, 999_999_999), HTTP_ACCEPT="image/png"), 404, "not_found"),
        (admin_client.get(download_url(999_999_999, attachment.id), HTTP_ACCEPT="image/png"), 404, "not_found"),
        (
            admin_client.get(download_url(missing.ticket_id, missing.id), HTTP_ACCEPT="image/png"),
            404,
            "attachment_missing",
        ),
        (APIClient().get(download_url(ticket.id, attachment.id), HTTP_ACCEPT="image/png"), 401, "not_authenticated"),
    ]


def test_errors_asked_with_an_image_accept_header_have_the_api_json_body(admin_client, filed):
    for response, status, code in _image_accept_errors(admin_client, filed):
        assert response.status_code == status
        body = json.loads(response.content)
        assert body["code"] == code and body["message"], body


def test_errors_asked_with_an_image_accept_header_are_labelled_json(admin_client, filed):
    for response, _, _ in _image_accept_errors(admin_client, filed):
        assert response["Content-Type"].startswith("application/json"), response["Content-Type"]


# --- Storage --------------------------------------------------------------------------------


def test_a_file_missing_from_storage_is_a_404_not_a_500(admin_client, filed, caplog):
    ticket = ticket_of(filed, PDF)
    attachment = Attachment.objects.get(ticket=ticket)
    (Path(django_settings.MEDIA_ROOT) / attachment.storage_name).unlink()
    response = admin_client.get(download_url(ticket.id, attachment.id))
    assert_error(response, 404, "attachment_missing")
    assert any("missing from storage" in r.getMessage() for r in caplog.records)
    # The ticket itself still reads.
    assert detail(admin_client, ticket)["messages"][0]["attachments"][0]["id"] == attachment.id


def photo_mail(n: int, photo: bytes) -> bytes:
    """A buyer's relay message (its own Message-ID, buyer and order) with one JPEG attached."""
    msg = email.message_from_bytes(relay_mail(n), policy=policy.SMTP)
    msg.add_attachment(photo, maintype="image", subtype="jpeg", filename=f"photo-{n}.jpg")
    return msg.as_bytes()


def test_the_same_photo_in_two_mails_is_stored_once_and_listed_twice(admin_client, admin, mailbox_user):
    photo = attachments_of(corpus_mail(PHOTOS))[0][2]
    connection = file_mails(mailbox_user, admin.tenant, photo_mail(1, photo), photo_mail(2, photo))

    assert len(stored_files()) == 1
    assert stored_files()[0].read_bytes() == photo
    tickets = list(Ticket.objects.filter(connection_id=connection.id).order_by("id"))
    assert len(tickets) == 2
    for n, ticket in enumerate(tickets, start=1):
        (message,) = detail(admin_client, ticket)["messages"]
        (item,) = message["attachments"]
        assert (item["filename"], item["contentType"], item["size"]) == (f"photo-{n}.jpg", "image/jpeg", len(photo))
        response = admin_client.get(download_url(ticket.id, item["id"]))
        assert b"".join(response.streaming_content) == photo
    assert Attachment.objects.values("storage_name").distinct().count() == 1


def test_the_same_bytes_in_two_tenants_are_kept_apart(mailbox_user, dovecot):
    photo = attachments_of(corpus_mail(PHOTOS))[0][2]
    file_mails(mailbox_user, make_member().tenant, photo_mail(1, photo))
    file_mails(dovecot.add_user(), make_member().tenant, photo_mail(2, photo))
    assert len(stored_files()) == 2
    assert Attachment.objects.values("storage_name").distinct().count() == 2


def test_a_poll_run_again_files_no_attachment_twice(admin, mailbox_user):
    connection = file_mails(mailbox_user, admin.tenant, corpus_mail(PHOTOS))
    # The mailbox read again from its start (as after a new UIDVALIDITY).
    type(connection).objects.filter(pk=connection.pk).update(poll_cursor="", next_poll_at=None)
    code, summary = poll()
    assert code == 0 and summary["new_messages"] == 0, summary
    assert Attachment.objects.count() == 2
    assert len(stored_files()) == 2


# --- Query count ----------------------------------------------------------------------------


def _ticket_with_files(tenant, messages: int):
    ticket = make_ticket(tenant, inbound=None)
    for i in range(messages):
        message = add_message(ticket, body=f"Photo {i}")
        for j in range(2):
            stored = attachment_store(
                tenant_id=tenant.id, data=f"bytes {i}-{j}".encode(), filename=f"p{i}-{j}.jpg", content_type="image/jpeg"
            )
            Attachment.objects.create(
                tenant=tenant,
                ticket=ticket,
                message=message,
                filename=stored.filename,
                content_type=stored.content_type,
                size=stored.size,
                sha256=stored.sha256,
                storage_name=stored.storage_name,
            )
    return ticket


def test_detail_query_count_does_not_grow_with_attachments(admin, admin_client, django_assert_num_queries):
    small = _ticket_with_files(admin.tenant, 1)
    large = _ticket_with_files(admin.tenant, 5)
    detail(admin_client, small)  # warm-up: nothing cached differs between the two calls below
    with CaptureQueriesContext(db) as one:
        assert len(detail(admin_client, small)["messages"]) == 1
    with django_assert_num_queries(len(one)):
        body = detail(admin_client, large)
    assert [len(m["attachments"]) for m in body["messages"]] == [2] * 5
    assert body["messages"][4]["attachments"][1]["filename"] == "p4-1.jpg"


# --- Size limit -----------------------------------------------------------------------------


def test_an_attachment_over_the_limit_is_skipped_and_the_message_still_filed(
    admin, admin_client, mailbox_user, settings
):
    settings.AMAZON_ATTACHMENT_MAX_BYTES = 1000  # the PNG (1009 bytes) is over, the JPEG (167) under
    connection = file_mails(mailbox_user, admin.tenant, corpus_mail(PHOTOS))

    ticket = ticket_of(connection, PHOTOS)
    (message,) = detail(admin_client, ticket)["messages"]
    assert "The lamp base arrived cracked" in message["body"]
    assert [(a["filename"], a["size"]) for a in message["attachments"]] == [("IMG_4471.jpg", 167)]
    assert len(stored_files()) == 1
    assert not Attachment.objects.filter(filename="delivery-confirmation.png").exists()

    external = ExternalMessage.objects.get(connection=connection)
    assert external.raw["skipped_attachments"] == [
        {"filename": "delivery-confirmation.png", "size": 1009, "reason": "too large"}
    ]
    assert [a["filename"] for a in external.raw["attachments"]] == ["IMG_4471.jpg"]
    assert TicketMessage.objects.get(external_message_id=external.id).ticket_id == ticket.id
