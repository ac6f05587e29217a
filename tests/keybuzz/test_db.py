"""keybuzz.db.insert_rows: the bulk insert/upsert the poller files messages with, on the test run's
database (PostgreSQL in CI, SQLite locally)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keybuzz.db import OnConflict, insert_rows
from marketplaces.models import ExternalMessage
from tests.factories import make_connection
from tickets.models import Ticket, TicketStatus

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
UPSERT = {"status": OnConflict.NEW, "last_message_at": OnConflict.LATEST, "response_due_at": OnConflict.KEEP}


def message_rows(count: int) -> list[dict]:
    return [
        {
            "external_id": f"m-{n}",
            "thread_key": f"t-{n}",
            "body": f"body {n} \u00e9\U0001f600",
            "sent_at": T0 + timedelta(seconds=n),
            "raw": {"n": n, "nested": {"list": [1, "two", None]}},
        }
        for n in range(count)
    ]


def test_inserts_rows_with_shared_values_and_defaults_and_skips_duplicates():
    connection = make_connection()
    shared = {"tenant_id": connection.tenant_id, "connection_id": connection.id}

    first = insert_rows(
        ExternalMessage,
        message_rows(3),
        shared=shared,
        conflict_fields=["connection", "external_id"],
        returning=["external_id", "id"],
    )
    again = insert_rows(
        ExternalMessage,
        message_rows(4),
        shared=shared,
        conflict_fields=["connection", "external_id"],
        returning=["external_id"],
    )

    assert sorted(e for e, _ in first) == ["m-0", "m-1", "m-2"]
    assert again == [("m-3",)]  # only the row this statement inserted
    stored = ExternalMessage.objects.get(external_id="m-2")
    assert (stored.tenant_id, stored.connection_id, stored.type) == (connection.tenant_id, connection.id, "AMAZON")
    assert stored.body == "body 2 \u00e9\U0001f600" and stored.sent_at == T0 + timedelta(seconds=2)
    assert stored.raw == {"n": 2, "nested": {"list": [1, "two", None]}}
    assert stored.order_id == "" and stored.created_at is not None  # defaults, auto_now_add


def test_many_rows_in_one_call():
    """More values than SQLite takes in one statement (it gets batches; PostgreSQL one JSON parameter)."""
    connection = make_connection()
    rows = message_rows(500)
    inserted = insert_rows(
        ExternalMessage,
        rows,
        shared={"tenant_id": connection.tenant_id, "connection_id": connection.id},
        conflict_fields=["connection", "external_id"],
        returning=["id"],
    )
    assert len(inserted) == ExternalMessage.objects.count() == 500


def test_upsert_rules():
    connection = make_connection()
    shared = {"tenant_id": connection.tenant_id, "connection_id": connection.id}
    Ticket.objects.create(
        thread_key="old",
        status=TicketStatus.RESOLVED,
        last_message_at=T0 + timedelta(hours=1),
        response_due_at=None,
        **shared,
    )
    Ticket.objects.create(
        thread_key="answered",
        status=TicketStatus.PENDING,
        last_message_at=T0,
        response_due_at=T0 + timedelta(hours=5),
        **shared,
    )
    proposed = [
        {
            "thread_key": key,
            "status": TicketStatus.OPEN,
            "last_message_at": T0 + timedelta(minutes=30),
            "response_due_at": T0 + timedelta(hours=24),
        }
        for key in ("old", "answered", "new")
    ]

    written = insert_rows(
        Ticket,
        proposed,
        shared=shared,
        update=UPSERT,
        conflict_fields=["connection_id", "thread_key"],
        returning=["thread_key", "id"],
    )

    assert sorted(key for key, _ in written) == ["answered", "new", "old"]
    tickets = {t.thread_key: t for t in Ticket.objects.all()}
    assert {t.status for t in tickets.values()} == {TicketStatus.OPEN}  # NEW
    assert tickets["old"].last_message_at == T0 + timedelta(hours=1)  # LATEST: the existing one was later
    assert tickets["answered"].last_message_at == T0 + timedelta(minutes=30)  # LATEST: the proposed one
    assert tickets["old"].response_due_at == T0 + timedelta(hours=24)  # KEEP: NULL takes the proposed
    assert tickets["answered"].response_due_at == T0 + timedelta(hours=5)  # KEEP: the existing one
    assert tickets["new"].response_due_at == T0 + timedelta(hours=24)


def test_a_misspelt_field_is_refused():
    connection = make_connection()
    with pytest.raises(ValueError, match="has no field sent"):
        insert_rows(
            ExternalMessage,
            [{"external_id": "m", "thread_key": "t", "sent": T0}],
            shared={"tenant_id": connection.tenant_id, "connection_id": connection.id},
            conflict_fields=["connection", "external_id"],
            returning=["id"],
        )
    with pytest.raises(ValueError, match="shared values"):
        insert_rows(
            ExternalMessage,
            message_rows(1),
            shared={"tenant": connection.tenant_id},
            conflict_fields=["connection", "external_id"],
            returning=["id"],
        )
    assert not ExternalMessage.objects.exists()
