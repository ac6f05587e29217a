"""Builders for the operations tests: connections, messages, tickets and poll runs at given times."""

from __future__ import annotations

import itertools
import os
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from keybuzz.models import Tenant
from marketplaces.models import ExternalMessage, MarketplaceConnection, QuarantinedMessage
from tests import factories
from tickets.models import Ticket

# pytest-django's live server (the browser test) listens on 127.0.0.1 only, not on every
# address "localhost" may resolve to. Read when the session's live server starts.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

_seq = itertools.count(1)
SUPERADMIN_PASSWORD = "pw-superadmin-metrics-123"


def make_connection(
    tenant: Tenant, *, last_polled_at: datetime | None = None, connected_at: datetime | None = None, **fields
) -> MarketplaceConnection:
    """Unlike the shared factory, no connected_at unless given: the figures read both times."""
    return factories.make_connection(tenant, last_polled_at=last_polled_at, connected_at=connected_at, **fields)


def make_message(connection: MarketplaceConnection, *, created_at: datetime) -> ExternalMessage:
    n = next(_seq)
    message = ExternalMessage.objects.create(
        tenant=connection.tenant,
        connection=connection,
        external_id=f"msg-{n}",
        thread_key=f"thread-{n}",
        body="Where is my parcel?",
        sent_at=created_at,
    )
    ExternalMessage.objects.filter(pk=message.pk).update(created_at=created_at)  # auto_now_add otherwise
    return message


def make_amazon_ticket(connection: MarketplaceConnection, *, created_at: datetime) -> Ticket:
    n = next(_seq)
    ticket = Ticket.objects.create(
        tenant=connection.tenant,
        connection_id=connection.id,
        thread_key=f"t-{n}",
        subject=f"Order {n}",
        last_message_at=created_at,
    )
    Ticket.objects.filter(pk=ticket.pk).update(created_at=created_at)
    return ticket


def make_quarantined(connection: MarketplaceConnection, *, created_at: datetime) -> QuarantinedMessage:
    row = QuarantinedMessage.objects.create(
        tenant=connection.tenant,
        connection=connection,
        external_id=f"bad-{next(_seq)}",
        reason="sent time has no time zone",
    )
    QuarantinedMessage.objects.filter(pk=row.pk).update(created_at=created_at)
    return row


def days_ago(now: datetime, days: int, **extra) -> datetime:
    return now - timedelta(days=days, **extra)


@pytest.fixture
def superadmin(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", SUPERADMIN_PASSWORD)


@pytest.fixture
def superadmin_client(client, superadmin):
    client.force_login(superadmin)
    return client
