"""The API's fast paths answer exactly what the DRF serializers they replace would: the list's and
the detail's plain dicts, the orjson renderer, the search's walk before its index lookup, and the
status counters the database keeps for the inbox figures."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer

from keybuzz.models import Role
from keybuzz.renderers import JSONRenderer
from tests.factories import api_client, make_member, make_tenant
from tests.tickets.factories import add_message, make_ticket
from tickets import pagination, selectors, services
from tickets.ingest import InboundMessage, inbound_messages_file
from tickets.models import DeliveryStatus, Direction, Ticket, TicketStatus, TicketStatusCount
from tickets.serializers import (
    TICKET_DETAIL_VALUES,
    TICKET_ROW_VALUES,
    TicketDetailSerializer,
    TicketRowSerializer,
    ticket_detail_data,
    ticket_rows_data,
)

URL = "/api/v1/tickets/"


def _varied_tickets(tenant, admin):
    named = make_member(tenant, role=Role.AGENT).user
    named.first_name, named.last_name = "Ana", "Lopez"
    named.save()
    now = timezone.now()
    plain = make_ticket(tenant, at=now - timedelta(hours=30), connection_id=uuid.uuid4())  # overdue
    add_message(plain, direction=Direction.NOTE, body="Note \u2018quoted\u2019 \u2028 line", author=admin.user)
    replied = make_ticket(tenant, assignee=named, status=TicketStatus.PENDING, at=now.replace(microsecond=0))
    add_message(replied, direction=Direction.OUTBOUND, body="Sent", author=admin.user, at=now + timedelta(seconds=1))
    add_message(replied, direction=Direction.OUTBOUND, body="Lost", delivery_status=DeliveryStatus.FAILED)
    add_message(
        replied,
        direction=Direction.OUTBOUND,
        body="Anyway",
        acknowledged_violations=[{"rule": "link", "text": "http://x", "start": 0, "end": 8, "message": "No links"}],
        channel_action="confirmDeliveryDetails",
        origin="amazon_messaging",
    )
    Ticket.objects.filter(pk=replied.pk).update(
        order_context={"orderId": "1", "status": "Shipped", "items": []}, order_context_at=now
    )
    empty = make_ticket(tenant, inbound=None, assignee=admin.user, status=TicketStatus.CLOSED, customer_name="Zoë")
    # Contexts the list shows no status for: not a string, empty, not an object.
    Ticket.objects.filter(pk=plain.pk).update(order_context={"orderId": "2", "status": 7}, order_context_at=now)
    Ticket.objects.filter(pk=empty.pk).update(order_context=["status", "Shipped"], order_context_at=now)
    blank = make_ticket(tenant, at=now - timedelta(hours=2))
    Ticket.objects.filter(pk=blank.pk).update(order_context={"status": ""}, order_context_at=now)
    return [plain.pk, replied.pk, empty.pk, blank.pk]


def _rendered(data, renderer=JSONRenderer):
    """What the client reads: the API's renderer, or DRF's own."""
    return json.loads(renderer().render(data))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])  # TIME_ZONE, or one a request activated
def test_list_rows_are_what_the_row_serializer_gives(admin, zone):
    ids = _varied_tickets(admin.tenant, admin)
    queryset = selectors.ticket_queryset(tenant=admin.tenant).filter(pk__in=ids).order_by("pk")
    with timezone.override(zone):
        expected = _rendered(TicketRowSerializer(list(queryset), many=True).data, DRFJSONRenderer)
        fast = ticket_rows_data(list(queryset.values(*TICKET_ROW_VALUES)))
    assert _rendered(fast) == expected
    assert [list(row) for row in fast] == [list(row) for row in expected]  # the same keys in the same order
    assert any(row["assignee"] and row["assignee"]["name"] == "Ana Lopez" for row in fast)
    assert [row["order_status"] for row in fast] == [None, "Shipped", None, None]
    assert all(row["created_at"].endswith("Z") == (zone == "UTC") for row in expected)  # Paris: +01:00 or +02:00


def test_the_detail_is_what_the_detail_serializer_gives(admin, admin_client):
    for ticket_id in _varied_tickets(admin.tenant, admin):
        ticket = selectors.ticket_get(tenant=admin.tenant, ticket_id=ticket_id)
        messages = selectors.ticket_messages(tenant=admin.tenant, ticket_id=ticket_id)
        expected = TicketDetailSerializer(ticket, context={"messages": messages}).data
        row = selectors.ticket_row_get(tenant=admin.tenant, ticket_id=ticket_id, fields=TICKET_DETAIL_VALUES)
        assert row is not None
        fast = ticket_detail_data(row, messages, selectors.ticket_files(tenant=admin.tenant, ticket_id=ticket_id))
        assert _rendered(fast) == _rendered(expected, DRFJSONRenderer)
        assert list(fast) == list(expected)
        answered = admin_client.get(f"{URL}{ticket_id}/")
        assert answered.status_code == 200
        assert answered.json() == json.loads(json.dumps(expected, default=str))


def _orm_filtered(queryset, *, user_id, filters, now):
    """The list's filters as ORM lookups: the reference tickets.rows.where_filters is compared with."""
    if filters.statuses:
        queryset = queryset.filter(status__in=filters.statuses)
    if filters.channel:
        queryset = queryset.filter(channel=filters.channel)
    if filters.assignee == "me":
        queryset = queryset.filter(assignee_id=user_id)
    elif filters.assignee == "none":
        queryset = queryset.filter(assignee__isnull=True)
    elif filters.assignee is not None:
        queryset = queryset.filter(assignee_id=int(filters.assignee))
    if filters.connection_id:
        queryset = queryset.filter(connection_id=filters.connection_id)
    if filters.overdue is True:
        queryset = queryset.filter(selectors._overdue_q(now))
    elif filters.overdue is False:
        queryset = queryset.exclude(selectors._overdue_q(now))
    return queryset


# The ORM's keyset pagination: the reference the written-out list (tickets.rows) is compared with.
def _orm_order(queryset: QuerySet, *, ordering: str) -> QuerySet:
    field, descending = pagination.ORDERINGS[ordering]
    if descending:
        return queryset.order_by(F(field).desc(nulls_last=True), "-id")
    return queryset.order_by(F(field).asc(nulls_last=True), "id")


def _orm_after(queryset: QuerySet, cursor: pagination.Cursor) -> QuerySet:
    """Rows strictly after the cursor's row in the ordering (NULLs last)."""
    field, descending = pagination.ORDERINGS[cursor.ordering]
    beyond_id = Q(id__lt=cursor.last_id) if descending else Q(id__gt=cursor.last_id)
    if cursor.value is None:
        return queryset.filter(Q(**{f"{field}__isnull": True}) & beyond_id)
    beyond_value = Q(**{f"{field}__lt" if descending else f"{field}__gt": cursor.value})
    return queryset.filter(beyond_value | (Q(**{field: cursor.value}) & beyond_id) | Q(**{f"{field}__isnull": True}))


def _orm_paginate(queryset: QuerySet, *, ordering: str, cursor_token: str | None, size: int) -> pagination.Page:
    if cursor_token:
        queryset = _orm_after(queryset, pagination.decode_cursor(cursor_token, ordering=ordering))
    rows = list(_orm_order(queryset, ordering=ordering)[: size + 1])
    return pagination.page_of(rows, ordering=ordering, size=size)


def _orm_page(tenant, user_id, filters, ordering, cursor_token, size, now):
    """The list's page as the ORM builds it: what tickets.rows writes out by hand must match."""
    queryset = _orm_filtered(
        selectors.ticket_queryset(tenant=tenant, now=now), user_id=user_id, filters=filters, now=now
    )
    return _orm_paginate(queryset.values(*TICKET_ROW_VALUES), ordering=ordering, cursor_token=cursor_token, size=size)


@pytest.mark.parametrize("ordering", sorted(pagination.ORDERINGS))
def test_the_written_out_list_query_pages_what_the_orm_pages(admin, ordering):
    other = make_tenant("fast-other")
    make_ticket(other, assignee=admin.user)  # never in admin's pages
    ids = _varied_tickets(admin.tenant, admin)
    connection_id = Ticket.objects.get(pk=ids[0]).connection_id
    now = timezone.now()
    for i in range(7):  # equal sort values and missing ones, so the keyset's ties and NULLs are walked
        make_ticket(admin.tenant, at=now - timedelta(hours=i % 3), inbound=None if i % 4 == 0 else "Hi")
    make_ticket(admin.tenant, at=now - timedelta(days=3), status=TicketStatus.PENDING)  # overdue
    filter_sets = [
        selectors.TicketFilters(),
        selectors.TicketFilters(statuses=["OPEN", "PENDING"]),
        selectors.TicketFilters(statuses=["CLOSED"], channel="amazon"),
        selectors.TicketFilters(assignee="me"),
        selectors.TicketFilters(assignee="none", overdue=False),
        selectors.TicketFilters(assignee=admin.user.pk),
        selectors.TicketFilters(connection_id=str(connection_id)),
        selectors.TicketFilters(overdue=True),
        selectors.TicketFilters(overdue=False),
    ]
    for filters in filter_sets:
        for size in (1, 2, 50):
            token, pages = None, 0
            while True:
                page = selectors.ticket_page(
                    tenant=admin.tenant,
                    user_id=admin.user.pk,
                    filters=filters,
                    ordering=ordering,
                    cursor_token=token,
                    size=size,
                    fields=TICKET_ROW_VALUES,
                    now=now,
                )
                expected = _orm_page(admin.tenant, admin.user.pk, filters, ordering, token, size, now)
                assert page == expected, (filters, size, pages)
                pages += 1
                if not page.next_cursor:
                    break
                token = page.next_cursor
            assert pages >= 1
    all_rows = selectors.ticket_page(
        tenant=admin.tenant, user_id=admin.user.pk, filters=selectors.TicketFilters(), ordering=ordering,
        cursor_token=None, size=100, fields=TICKET_ROW_VALUES, now=now,
    ).rows  # fmt: skip
    assert len(all_rows) == Ticket.objects.filter(tenant=admin.tenant).count() == 12
    assert any(row["is_overdue"] for row in all_rows) and not all(row["is_overdue"] for row in all_rows)


def test_the_written_out_detail_row_is_the_orms(admin):
    now = timezone.now()
    for ticket_id in _varied_tickets(admin.tenant, admin):
        expected = selectors.ticket_queryset(tenant=admin.tenant, now=now).filter(pk=ticket_id)
        row = selectors.ticket_row_get(tenant=admin.tenant, ticket_id=ticket_id, fields=TICKET_DETAIL_VALUES, now=now)
        assert row == expected.values(*TICKET_DETAIL_VALUES).get()
    other = make_ticket(make_tenant("fast-detail-other"))
    assert selectors.ticket_row_get(tenant=admin.tenant, ticket_id=other.pk, fields=TICKET_DETAIL_VALUES) is None


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1.5, None, True, "\u00e9 \u2018x\u2019 \u2028 \u2029 \U0001f600"], "c": {"d": "e"}},
        {
            "when": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            "whole": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "utc_zone": datetime(2026, 1, 2, 3, 4, 5, 12, tzinfo=ZoneInfo("UTC")),
            "london_winter": datetime(2026, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/London")),  # +00:00: Z
            "paris_summer": datetime(2026, 7, 2, 3, 4, 5, 500, tzinfo=ZoneInfo("Europe/Paris")),
            "kolkata": datetime(2026, 7, 2, 3, 4, 5, tzinfo=ZoneInfo("Asia/Kolkata")),
            "naive": datetime(2026, 7, 2, 3, 4, 5),
            "day": date(2026, 7, 2),
            "time": time(3, 4, 5, 678901),
            "id": uuid.UUID(int=5),
            "price": Decimal("2.50"),
            "big": 2**70,
        },
        {"errors": {0: ["Not a valid string."], 2: {"x": ["Required."]}}, "ok": True},  # a list field's errors
        [],
        "text",
    ],
)
def test_the_orjson_renderer_writes_drfs_json(data):
    assert JSONRenderer().render(data) == DRFJSONRenderer().render(data)


def test_the_orjson_renderer_leaves_indented_answers_to_drf():
    data = {"a": [1, 2]}
    assert JSONRenderer().render(data, "application/json; indent=2") == DRFJSONRenderer().render(
        data, "application/json; indent=2"
    )
    indented = JSONRenderer().render(data, "application/json", {"indent": 4})
    assert indented == DRFJSONRenderer().render(data, "application/json", {"indent": 4}) and b"\n    " in indented


@pytest.mark.parametrize("walk_per_row", [1, 8, 1000])
@pytest.mark.parametrize("ids_max", [2, 2000])
def test_every_search_path_pages_the_same_tickets(admin, admin_client, monkeypatch, walk_per_row, ids_max):
    """The walk of the next tickets (filling the page, or covering every ticket left), the trigram ids
    and the unbounded test per ticket answer the same pages."""
    monkeypatch.setattr("tickets.selectors.SEARCH_WALK_PER_ROW", walk_per_row)
    monkeypatch.setattr("tickets.selectors.SEARCH_IDS_MAX", ids_max)
    tenant = admin.tenant
    now = timezone.now()
    expected = []
    for i in range(12):
        at = now - timedelta(hours=i)
        if i % 3 == 0:
            expected.append(make_ticket(tenant, inbound=f"My lamp {i} is broken", at=at).pk)
        elif i == 4:
            expected.append(make_ticket(tenant, subject="LAMP question", at=at).pk)
        elif i == 5:
            expected.append(make_ticket(tenant, order_id="405-1234567-7654321", at=at, inbound="x").pk)
        else:
            make_ticket(tenant, inbound="Where is my parcel?", at=at)
    make_ticket(make_tenant(), inbound="My lamp is broken too")  # another tenant's

    def pages(q: str) -> list[int]:
        found, response = [], admin_client.get(URL, {"q": q, "limit": 2}).json()
        while True:
            found += [row["id"] for row in response["results"]]
            if not response["next"]:
                return found
            response = admin_client.get(response["next"]).json()

    lamp = [pk for pk in expected if pk != expected[3]]  # the order id's ticket mentions no lamp
    assert pages("lamp") == lamp
    assert pages("567-765") == [expected[3]]  # part of an order id
    assert pages("xylophone") == []


# --- The status counters (TicketStatusCount), kept by the database --------------------------------


def _counted(tenant) -> dict[str, int]:
    return {s: n for s, n in TicketStatusCount.objects.filter(tenant=tenant).values_list("status", "count") if n}


def _actual(tenant) -> dict[str, int]:
    rows = Ticket.objects.filter(tenant=tenant).values("status").annotate(n=Count("pk")).order_by()
    return {row["status"]: row["n"] for row in rows}


def test_the_status_counts_follow_every_write(admin, settings):
    settings.AMAZON_USE_MOCK = True
    tenant = admin.tenant
    other = make_tenant()
    make_ticket(other)
    tickets = [make_ticket(tenant) for _ in range(3)]
    assert _counted(tenant) == {"OPEN": 3} == _actual(tenant)

    services.ticket_update(tenant=tenant, ticket_id=tickets[0].pk, actor=admin, status=TicketStatus.RESOLVED)
    services.ticket_update(tenant=tenant, ticket_id=tickets[1].pk, actor=admin, status=TicketStatus.CLOSED)
    assert _counted(tenant) == {"OPEN": 1, "RESOLVED": 1, "CLOSED": 1} == _actual(tenant)

    # The poller: new tickets and a follow-up that reopens a closed one, in one upsert.
    connection_id = uuid.uuid4()
    Ticket.objects.filter(pk=tickets[1].pk).update(connection_id=connection_id, thread_key="t-1")
    now = timezone.now()
    with transaction.atomic():
        inbound_messages_file(
            tenant_id=tenant.pk,
            connection_id=connection_id,
            channel="AMAZON",
            messages=[
                InboundMessage(external_message_id=9001, thread_key="t-1", sent_at=now, body="Again"),
                InboundMessage(external_message_id=9002, thread_key="t-2", sent_at=now, body="New"),
            ],
        )
    assert _counted(tenant) == {"OPEN": 3, "RESOLVED": 1} == _actual(tenant)

    Ticket.objects.filter(pk=tickets[2].pk).update(status=TicketStatus.PENDING)  # the admin, a bulk update
    Ticket.objects.filter(pk=tickets[0].pk).delete()
    assert _counted(tenant) == {"OPEN": 2, "PENDING": 1} == _actual(tenant)
    with transaction.atomic():
        Ticket.objects.filter(tenant=tenant).update(status=TicketStatus.CLOSED)
        transaction.set_rollback(True)  # a rolled-back write leaves the counts as they were
    assert _counted(tenant) == {"OPEN": 2, "PENDING": 1}
    assert _counted(other) == {"OPEN": 1}

    tenant.delete()  # its tickets and its counters go
    assert not TicketStatusCount.objects.filter(tenant_id=admin.tenant_id).exists()
    assert _counted(other) == {"OPEN": 1}


def test_the_stats_read_the_counters(admin, admin_client):
    make_ticket(admin.tenant)
    make_ticket(admin.tenant, status=TicketStatus.RESOLVED)
    stats = admin_client.get("/api/v1/tickets/stats/").json()
    assert stats["by_status"] == {"OPEN": 1, "PENDING": 0, "RESOLVED": 1, "CLOSED": 0}
    assert stats["total"] == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_status_counts_stay_exact_under_concurrent_writers(requires_postgres):
    """Agents changing statuses and pollers filing tickets at once, in their own transactions."""
    tenant = make_tenant()
    admin = make_member(tenant, role=Role.ADMIN)
    tickets = [make_ticket(tenant).pk for _ in range(40)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def agent(mine: list[int]) -> None:
        try:
            start.wait()
            for pk in mine:
                services.ticket_update(tenant=tenant, ticket_id=pk, actor=admin, status=TicketStatus.RESOLVED)
                services.ticket_update(tenant=tenant, ticket_id=pk, actor=admin, status=TicketStatus.OPEN)
                services.ticket_update(tenant=tenant, ticket_id=pk, actor=admin, status=TicketStatus.PENDING)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def poller(offset: int) -> None:
        try:
            start.wait()
            connection_id = uuid.uuid4()
            for batch in range(10):
                with transaction.atomic():
                    inbound_messages_file(
                        tenant_id=tenant.pk,
                        connection_id=connection_id,
                        channel="AMAZON",
                        messages=[
                            InboundMessage(
                                external_message_id=offset + batch * 10 + i,
                                thread_key=f"p{offset}-{i}",  # the same threads again: reopened
                                sent_at=timezone.now(),
                                body="Hello",
                            )
                            for i in range(5)
                        ],
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=agent, args=(tickets[i::2],)) for i in range(2)]
    threads += [threading.Thread(target=poller, args=(offset,)) for offset in (100_000, 200_000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert _counted(tenant) == _actual(tenant) == {"PENDING": 40, "OPEN": 10}


def _plans_read(notices: list[str]) -> tuple[int, int]:
    """From auto_explain's JSON plans: the ticket rows the statements read (returned or filtered out,
    every loop, index entries included) and how many times they read a ticket's messages."""
    tickets = messages = 0

    def walk(node: dict) -> None:
        nonlocal tickets, messages
        loops = node.get("Actual Loops", 1)
        if node.get("Relation Name") == "tickets_ticket" and "Index Name" not in node.get("Node Type", ""):
            tickets += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
        if node.get("Relation Name") == "tickets_ticketmessage":
            messages += loops
        for child in node.get("Plans", []):
            walk(child)

    for notice in notices:
        walk(json.loads(notice.split("plan:", 1)[1])["Plan"])
    return tickets, messages


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "query",
    [
        {},
        {"status": "OPEN"},
        {"overdue": "true"},
        {"overdue": "false"},
        {"assignee": "none", "channel": "AMAZON"},
        {"ordering": "response_due_at"},
        {"ordering": "-response_due_at"},
        {"ordering": "last_message_at"},
    ],
)
def test_a_page_reads_a_page_whatever_plan_postgresql_keeps(requires_postgres, query):
    """PostgreSQL keeps one plan per list statement, made for the table's average tenant
    (tickets.rows.where_tenant). Beside 5,000 one-ticket tenants that average is two tickets; a page
    of a tenant with 5,000 must still read about a page of them, not all of them. Before migration
    0013 every case here read the 5,000 (the inbox: each one's messages too, then a sort); before 0014,
    the inbox and the oldest-first list did once every ticket had been updated."""
    member = make_member(make_tenant("large"), role=Role.ADMIN)
    client = api_client(member)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO keybuzz_tenant (id, slug, name, is_active, created_at, updated_at, ai_enabled, reply_tone,"
            " signature) SELECT gen_random_uuid(), 'small-' || g, 'Small', TRUE, %s, %s, TRUE, 'neutral', ''"
            " FROM generate_series(1, 5000) g",
            [now, now],
        )
        # Every other ticket overdue, every third without a due time (answered), all unassigned and OPEN.
        cursor.execute(
            "INSERT INTO tickets_ticket (tenant_id, channel, thread_key, subject, customer_name, customer_ref,"
            " order_id, status, last_message_at, last_inbound_at, last_reply_at, response_due_at, created_at,"
            " updated_at) SELECT t.id, 'AMAZON', 'thread-' || t.slug || '-' || g, 'Subject', 'Buyer', 'ref', '',"
            " 'OPEN', %s - g * interval '1 minute', %s - g * interval '1 minute',"
            " CASE WHEN g %% 3 = 0 THEN %s END,"
            " CASE WHEN g %% 3 <> 0 THEN %s + (CASE WHEN g %% 2 = 0 THEN -1 ELSE 1 END) * g * interval '1 hour' END,"
            " %s, %s FROM keybuzz_tenant t, generate_series(1, CASE WHEN t.slug = 'large' THEN 5000 ELSE 1 END) g",
            [now, now, now, now, now, now],
        )
        cursor.execute(  # the buyer's message of each ticket
            "INSERT INTO tickets_ticketmessage (tenant_id, ticket_id, direction, author_name, body, delivery_status,"
            " delivery_error, delivery_attempts, delivery_ref, delivery_worker, acknowledged_violations, origin,"
            " channel_action, sent_at, created_at) SELECT tenant_id, id, 'INBOUND', 'Buyer', 'Where is my parcel?',"
            " '', '', 0, '', '', '[]', '', '', last_message_at, created_at FROM tickets_ticket"
        )
        # Every ticket updated once, as the poller and the agents do all day: each index gets a second
        # entry per ticket until VACUUM, and the indexes' sizes no longer decide the plan (migration 0014).
        cursor.execute("UPDATE tickets_ticket SET updated_at = updated_at")
    with connection.cursor() as cursor:  # outside a transaction: VACUUM sets the visibility map, as autovacuum does
        cursor.execute("VACUUM ANALYZE tickets_ticket, tickets_ticketmessage, keybuzz_tenant")
        cursor.execute("LOAD 'auto_explain'")
        for setting, value in [
            ("plan_cache_mode", "force_generic_plan"),  # the plan PostgreSQL keeps after five runs, from the first
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_format", "json"),
            ("auto_explain.log_level", "notice"),  # to this client, not the server's log
        ]:
            cursor.execute("SELECT set_config(%s, %s, false)", [setting, value])
    notices: list[str] = []
    connection.connection.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    response = client.get(URL, {**query, "limit": 25})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 25
    plans = [notice for notice in notices if "tickets_ticket" in notice]
    assert plans
    tickets_read, message_reads = _plans_read(plans)
    assert tickets_read <= 4 * 26, (tickets_read, query)
    assert message_reads <= 2 * 26, (message_reads, query)  # each row's preview and counts, page rows only
