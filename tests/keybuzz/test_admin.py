"""The Django admin is the superadmin's: every model's pages render, nobody else gets in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from keybuzz.models import AiUsage, Role
from marketplaces.models import (
    ConnectionStatus,
    ExternalMessage,
    Mailbox,
    MailboxActivity,
    MarketplaceConnection,
    OAuthState,
    QuarantinedMessage,
)
from tests.factories import make_member, make_tenant, make_user
from tickets.models import Direction, MessageTranslation, Ticket, TicketMessage

pytestmark = pytest.mark.django_db

MODELS = [
    ("keybuzz", "tenant"),
    ("keybuzz", "membership"),
    ("keybuzz", "aiusage"),
    ("marketplaces", "marketplaceconnection"),
    ("marketplaces", "oauthstate"),
    ("marketplaces", "externalmessage"),
    ("marketplaces", "quarantinedmessage"),
    ("marketplaces", "mailbox"),
    ("marketplaces", "mailboxactivity"),
    ("tickets", "ticket"),
    ("tickets", "ticketmessage"),
    ("tickets", "messagetranslation"),
]


@pytest.fixture
def data():
    tenant = make_tenant("acme")
    member = make_member(tenant, role=Role.OWNER)
    connection = MarketplaceConnection.objects.create(
        tenant=tenant,
        selling_partner_id="A1SELLER",
        status=ConnectionStatus.ERROR,
        region="EU",
        secret_ref=f"keybuzz/tenants/{tenant.id}/amazon/A1SELLER",
        last_error="Token refresh failed: invalid_grant",
        last_error_at=timezone.now(),
    )
    OAuthState.objects.create(
        state_hash="f" * 64, tenant=tenant, user=member.user, expires_at=timezone.now() + timedelta(minutes=15)
    )
    now = timezone.now()
    message = ExternalMessage.objects.create(
        tenant=tenant,
        connection=connection,
        external_id="msg-1",
        thread_key="thread-1",
        order_id="402-1",
        subject="Where is my order?",
        body="Hello",
        sent_at=now,
    )
    Mailbox.objects.create(
        connection=connection,
        tenant=tenant,
        imap_host="imap.example.com",
        imap_port=993,
        imap_security="tls",
        imap_username="amazon@acme.example",
        imap_secret_ref=f"keybuzz/tenants/{tenant.id}/mailbox/{connection.id}/imap",
        last_error="Mailbox login refused for amazon@acme.example@imap.example.com:993",
    )
    MailboxActivity.objects.create(
        tenant=tenant,
        connection=connection,
        external_id="return-1@amazon.com",
        kind="notification",
        notification_type="RETURN_REQUEST",
        subject="Return authorization request for order 402-1",
        order_id="402-1",
    )
    MailboxActivity.objects.create(
        tenant=tenant,
        connection=connection,
        external_id="rejected-1@amazon.com",
        kind="delivery_failure",
        subject="Message delivery failure: Re: Where is my order?",
        refers_to_message_id="kb.unknown@acme.example",
    )
    QuarantinedMessage.objects.create(
        tenant=tenant,
        connection=connection,
        external_id="msg-bad",
        reason="missing threadId",
        raw={"messageId": "msg-bad"},
    )
    ticket = Ticket.objects.create(
        tenant=tenant,
        connection_id=connection.id,
        thread_key="thread-1",
        subject="Where is my order?",
        order_id="402-1",
        last_message_at=now,
    )
    inbound = TicketMessage.objects.create(
        tenant=tenant,
        ticket=ticket,
        direction=Direction.INBOUND,
        body="Hello",
        external_message_id=message.id,
        sent_at=now,
    )
    MessageTranslation.objects.create(tenant=tenant, message=inbound, language="de", text="Hallo", model="m")
    AiUsage.objects.create(tenant=tenant, day=now.date(), calls=3)
    return {"tenant": tenant, "member": member, "connection": connection, "ticket": ticket}


@pytest.fixture
def superadmin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-superadmin-123"))
    return client


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_superadmin_sees_every_changelist_and_change_page(superadmin_client, data, app, model):
    changelist = superadmin_client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert changelist.status_code == 200
    from django.apps import apps

    obj = apps.get_model(app, model).objects.first()
    change = superadmin_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_changelists_filter_and_search(superadmin_client, data):
    url = reverse("admin:marketplaces_marketplaceconnection_changelist")
    page = superadmin_client.get(url, {"status__exact": "ERROR", "q": "A1SELLER"}).content.decode()
    assert "A1SELLER" in page
    assert "Token refresh failed: invalid_grant" in page  # the last error is on the list
    assert "A1SELLER" not in superadmin_client.get(url, {"status__exact": "CONNECTED"}).content.decode()

    activity = reverse("admin:marketplaces_mailboxactivity_changelist")
    unmatched = superadmin_client.get(activity, {"matched": "no"}).content.decode()
    assert "Message delivery failure" in unmatched  # a notice no reply matched, left for people
    assert "Return authorization request" not in unmatched  # notifications are never matched

    tickets = reverse("admin:tickets_ticket_changelist")
    assert "Where is my order?" in superadmin_client.get(tickets, {"q": "402-1"}).content.decode()
    assert "Where is my order?" not in superadmin_client.get(tickets, {"q": "nothing-like-it"}).content.decode()


def test_a_message_shows_the_ticket_it_was_filed_in(superadmin_client, data):
    ticket = str(data["ticket"])
    changelist = superadmin_client.get(reverse("admin:marketplaces_externalmessage_changelist")).content.decode()
    assert ticket in changelist
    message = ExternalMessage.objects.get()
    change = superadmin_client.get(reverse("admin:marketplaces_externalmessage_change", args=[message.pk]))
    assert ticket in change.content.decode()


def test_no_secret_is_shown_or_editable(superadmin_client, data):
    page = superadmin_client.get(
        reverse("admin:marketplaces_oauthstate_change", args=[OAuthState.objects.get().pk])
    ).content.decode()
    assert "f" * 64 not in page  # not even the state's hash
    page = superadmin_client.get(
        reverse("admin:marketplaces_marketplaceconnection_change", args=[data["connection"].pk])
    ).content.decode()
    assert 'name="secret_ref"' not in page  # shown as text, never an input
    assert 'name="status"' in page  # the one field an operator may force
    page = superadmin_client.get(
        reverse("admin:marketplaces_mailbox_change", args=[data["connection"].pk])
    ).content.decode()
    assert "Mailbox login refused" in page  # the last error is shown
    assert 'name="imap_host"' not in page and 'name="imap_secret_ref"' not in page  # read-only


@pytest.mark.parametrize("kind", ["anonymous", "tenant_owner", "staff_not_superuser"])
def test_others_are_refused(client, data, kind):
    if kind == "tenant_owner":
        client.force_login(data["member"].user)
    elif kind == "staff_not_superuser":
        client.force_login(make_user(is_staff=True))
    for app, model in MODELS:
        response = client.get(reverse(f"admin:{app}_{model}_changelist"))
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
