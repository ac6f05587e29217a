from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keybuzz.models import Role
from tests.factories import api_client, make_connection, make_member, make_tenant
from tests.tickets.factories import add_message, make_ticket
from tickets.models import DeliveryStatus, Direction, TicketStatus

URL = "/api/v1/tickets/"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(client, params: dict) -> list[list[int]]:
    """Every page's ids, following the `next` links."""
    pages = []
    response = client.get(URL, params)
    while True:
        pages.append(ids(response))
        next_url = response.json()["next"]
        if not next_url:
            return pages
        response = client.get(next_url)


def test_row_shows_what_the_inbox_needs(admin, admin_client):
    now = timezone.now()
    ticket = make_ticket(
        admin.tenant,
        inbound="Hello, my parcel has not arrived.",
        at=now - timedelta(hours=2),
        subject="Parcel missing",
        customer_name="Jane Buyer",
        order_id="405-1111111-2222222",
        assignee=admin.user,
    )
    add_message(
        ticket,
        direction=Direction.OUTBOUND,
        body="We are on it, sorry for the wait.",
        at=now - timedelta(hours=1),
        author_name="Sam",
    )
    add_message(ticket, direction=Direction.NOTE, body="Carrier says lost.", at=now - timedelta(minutes=5))
    add_message(
        ticket,
        direction=Direction.OUTBOUND,
        body="Bounced",
        at=now - timedelta(minutes=30),
        delivery_status=DeliveryStatus.FAILED,
    )

    row = admin_client.get(URL).json()["results"][0]

    assert row["id"] == ticket.id
    assert row["subject"] == "Parcel missing"
    assert row["customer"]["name"] == "Jane Buyer"
    assert row["order_id"] == "405-1111111-2222222"
    assert row["channel"] == "AMAZON"
    assert row["status"] == "OPEN"
    assert row["assignee"] == {"id": admin.user.id, "username": admin.user.username, "name": admin.user.username}
    # The preview is the latest conversation message; internal notes are not part of it.
    assert row["last_message"]["body"] == "Bounced"
    assert row["last_message"]["direction"] == "OUTBOUND"
    assert row["counts"] == {"messages": 3, "notes": 1, "failed": 1}
    assert row["response_due_at"] is not None
    assert row["overdue"] is False


def test_preview_is_cut(admin, admin_client):
    make_ticket(admin.tenant, inbound="x" * 1000)
    assert len(admin_client.get(URL).json()["results"][0]["last_message"]["body"]) == 160


def test_filter_by_status_one_or_several(admin, admin_client):
    tickets = {s: make_ticket(admin.tenant, status=s) for s in TicketStatus.values}

    assert ids(admin_client.get(URL, {"status": "PENDING"})) == [tickets["PENDING"].id]
    both = {tickets["OPEN"].id, tickets["PENDING"].id}
    assert set(ids(admin_client.get(URL, {"status": ["OPEN", "PENDING"]}))) == both
    assert set(ids(admin_client.get(URL, {"status": "OPEN,PENDING"}))) == both
    assert len(ids(admin_client.get(URL))) == 4


def test_filter_by_channel(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    assert ids(admin_client.get(URL, {"channel": "AMAZON"})) == [ticket.id]


def test_filter_by_assignee(admin, agent, admin_client):
    mine = make_ticket(admin.tenant, assignee=admin.user)
    theirs = make_ticket(admin.tenant, assignee=agent.user)
    nobody = make_ticket(admin.tenant)

    assert ids(admin_client.get(URL, {"assignee": "me"})) == [mine.id]
    assert ids(admin_client.get(URL, {"assignee": "none"})) == [nobody.id]
    assert ids(admin_client.get(URL, {"assignee": str(agent.user.id)})) == [theirs.id]


def test_filter_by_connection(admin, admin_client):
    first, second = make_connection(admin.tenant), make_connection(admin.tenant)
    on_first = make_ticket(admin.tenant, connection_id=first.id)
    make_ticket(admin.tenant, connection_id=second.id)

    assert ids(admin_client.get(URL, {"connection": str(first.id)})) == [on_first.id]
    other_tenant_connection = make_connection(make_tenant())
    assert ids(admin_client.get(URL, {"connection": str(other_tenant_connection.id)})) == []


def test_overdue_means_due_time_passed_and_no_reply_since_the_last_buyer_message(admin, admin_client):
    now = timezone.now()
    overdue = make_ticket(admin.tenant, at=now - timedelta(hours=30))
    due_later = make_ticket(admin.tenant, at=now - timedelta(hours=2))
    # Answered after the buyer wrote (the poller had set a due time, the reply came in late).
    answered = make_ticket(admin.tenant, at=now - timedelta(hours=30))
    add_message(answered, direction=Direction.OUTBOUND, body="Sorry!", at=now - timedelta(hours=1))
    # Answered, then the buyer wrote again long ago: overdue again.
    followed_up = make_ticket(admin.tenant, at=now - timedelta(hours=60))
    add_message(followed_up, direction=Direction.OUTBOUND, body="Done", at=now - timedelta(hours=50))
    add_message(followed_up, body="Still nothing", at=now - timedelta(hours=40))
    # A note is not an answer.
    noted = make_ticket(admin.tenant, at=now - timedelta(hours=30))
    add_message(noted, direction=Direction.NOTE, body="Looking into it", at=now - timedelta(hours=1))
    # Resolved tickets wait for nobody.
    make_ticket(admin.tenant, at=now - timedelta(hours=30), status=TicketStatus.RESOLVED)

    assert set(ids(admin_client.get(URL, {"overdue": "true"}))) == {overdue.id, followed_up.id, noted.id}
    assert due_later.id in ids(admin_client.get(URL, {"overdue": "false"}))
    rows = {row["id"]: row for row in admin_client.get(URL).json()["results"]}
    assert rows[overdue.id]["overdue"] is True
    assert rows[answered.id]["overdue"] is False


@pytest.mark.parametrize("term", ["parcel", "JANE", "405-9999", "blue scarf", "refund approved"])
def test_search_subject_customer_order_and_message_text(admin, admin_client, term):
    hit = make_ticket(
        admin.tenant,
        subject="Parcel question",
        customer_name="Jane Doe",
        order_id="405-9999999-1234567",
        inbound="I ordered a blue scarf",
    )
    add_message(hit, body="Also the blue scarf is torn")  # two matching messages: still one row
    add_message(hit, direction=Direction.NOTE, body="Refund approved by Sam")
    make_ticket(admin.tenant, subject="Invoice", customer_name="Max", order_id="111", inbound="Need an invoice")

    assert ids(admin_client.get(URL, {"q": term})) == [hit.id]


def test_default_ordering_is_newest_activity_first(admin, admin_client):
    now = timezone.now()
    old = make_ticket(admin.tenant, at=now - timedelta(days=2))
    new = make_ticket(admin.tenant, at=now - timedelta(minutes=1))
    middle = make_ticket(admin.tenant, at=now - timedelta(hours=3))
    empty = make_ticket(admin.tenant, inbound=None)  # no message yet: last

    assert ids(admin_client.get(URL)) == [new.id, middle.id, old.id, empty.id]
    assert ids(admin_client.get(URL, {"ordering": "last_message_at"})) == [old.id, middle.id, new.id, empty.id]


def test_ordering_by_response_due_time_most_urgent_first(admin, admin_client):
    now = timezone.now()
    later = make_ticket(admin.tenant, at=now, due_in=timedelta(hours=20))
    sooner = make_ticket(admin.tenant, at=now, due_in=timedelta(hours=1))
    no_due = make_ticket(admin.tenant, at=now, due_in=None)
    late = make_ticket(admin.tenant, at=now - timedelta(days=2))

    assert ids(admin_client.get(URL, {"ordering": "response_due_at"})) == [late.id, sooner.id, later.id, no_due.id]
    pages = walk(admin_client, {"ordering": "response_due_at", "limit": 1})
    assert pages == [[late.id], [sooner.id], [later.id], [no_due.id]]


@pytest.mark.parametrize("ordering", ["-last_message_at", "last_message_at", "response_due_at", "-response_due_at"])
def test_pages_cover_every_ticket_once_including_ties_and_nulls(admin, admin_client, ordering):
    now = timezone.now()
    for i in range(4):  # same time: the id breaks the tie
        make_ticket(admin.tenant, at=now - timedelta(hours=1))
        make_ticket(admin.tenant, at=now - timedelta(hours=i), due_in=None)
    make_ticket(admin.tenant, inbound=None)
    make_ticket(admin.tenant, inbound=None)

    pages = walk(admin_client, {"ordering": ordering, "limit": 3})
    seen = [i for page in pages for i in page]
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert len(seen) == len(set(seen)) == 10
    assert seen == ids(admin_client.get(URL, {"ordering": ordering, "limit": 100}))


def test_page_boundary_is_stable_while_new_tickets_arrive(admin, admin_client):
    now = timezone.now()
    existing = [make_ticket(admin.tenant, at=now - timedelta(minutes=10 * i)) for i in range(1, 8)]
    expected = [t.id for t in existing]  # newest first

    first = admin_client.get(URL, {"limit": 3})
    assert ids(first) == expected[:3]
    # Buyers write in between: new tickets sort before the page boundary and shift nothing.
    arrived = [make_ticket(admin.tenant, at=timezone.now()) for _ in range(4)]

    second = admin_client.get(first.json()["next"])
    assert ids(second) == expected[3:6]
    third = admin_client.get(second.json()["next"])
    assert ids(third) == expected[6:]
    assert third.json()["next"] is None
    # A fresh first page shows the newcomers.
    assert ids(admin_client.get(URL, {"limit": 4})) == [t.id for t in reversed(arrived)]


def test_next_link_keeps_the_filters(admin, admin_client):
    for _ in range(3):
        make_ticket(admin.tenant, status=TicketStatus.PENDING)
    make_ticket(admin.tenant)
    pages = walk(admin_client, {"status": "PENDING", "limit": 2})
    assert [len(p) for p in pages] == [2, 1]


def test_page_size_has_a_ceiling(admin, admin_client, settings):
    settings.TICKETS_PAGE_SIZE_MAX = 2
    for _ in range(3):
        make_ticket(admin.tenant)
    assert len(ids(admin_client.get(URL, {"limit": 50}))) == 2


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "WAITING"}, "status"),
        ({"assignee": "bob"}, "assignee"),
        ({"connection": "not-a-uuid"}, "connection"),
        ({"overdue": "maybe"}, "overdue"),
        ({"ordering": "subject"}, "ordering"),
        ({"limit": "0"}, "limit"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_bad_filter_values_get_400_invalid_filter(admin_client, params, field):
    for _ in range(2):  # validated queries are kept per process: an error is found again, not kept
        response = admin_client.get(URL, params)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_filter"
        assert field in response.json()["details"]


def test_the_same_query_again_filters_the_same_way(admin, admin_client):
    """The list's validated parameters are kept per distinct query; requests share them, and one
    request's filters never change the next one's."""
    open_ticket = make_ticket(admin.tenant)
    pending = make_ticket(admin.tenant, status=TicketStatus.PENDING)
    for _ in range(2):
        assert ids(admin_client.get(URL, {"status": "OPEN"})) == [open_ticket.id]
        assert ids(admin_client.get(URL, {"status": "OPEN,PENDING"})) == [pending.id, open_ticket.id]
        assert ids(admin_client.get(URL, {"status": "PENDING", "limit": "5"})) == [pending.id]
        assert ids(admin_client.get(URL, {"limit": "5", "status": "PENDING"})) == [pending.id]


def test_bad_cursor_gets_400_invalid_cursor(admin, admin_client):
    for _ in range(3):
        make_ticket(admin.tenant)
    response = admin_client.get(URL, {"cursor": "garbage!"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"

    cursor = admin_client.get(URL, {"limit": 1}).json()["next_cursor"]
    response = admin_client.get(URL, {"cursor": cursor, "ordering": "response_due_at"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


def test_the_list_needs_a_token(db):
    response = api_client().get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def _list_queries(client, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, params or {"limit": 100})
    assert response.status_code == 200
    return len(queries)


def test_the_list_costs_a_constant_number_of_queries(admin, admin_client):
    tenant = admin.tenant
    members = [make_member(tenant, role=Role.AGENT) for _ in range(3)]
    connection_row = make_connection(tenant)

    def add_tickets(n: int) -> None:
        for i in range(n):
            ticket = make_ticket(tenant, assignee=members[i % 3].user, connection_id=connection_row.id)
            add_message(ticket, direction=Direction.OUTBOUND, body="Reply", author=admin.user)
            add_message(ticket, direction=Direction.NOTE, body="Note", author=admin.user)

    add_tickets(5)
    with_5 = _list_queries(admin_client)
    add_tickets(45)
    with_50 = _list_queries(admin_client)
    assert admin_client.get(URL, {"limit": 100}).json()["results"].__len__() == 50

    assert with_5 == with_50
    assert with_50 <= 2  # the token's membership, then the page
    # A search adds one query (the next tickets of the page order, among which the page is then
    # tested: fewer than the walk's window here), however many match; none when no ticket is left
    # to test (every ticket here is assigned).
    assert _list_queries(admin_client, {"limit": 100, "q": "reply"}) == with_50 + 1
    assert (
        _list_queries(
            admin_client, {"limit": 100, "q": "reply", "overdue": "false", "assignee": "none", "status": "OPEN,PENDING"}
        )
        == with_50
    )
    # The overdue page is one query too, whatever it holds.
    assert _list_queries(admin_client, {"limit": 100, "overdue": "true"}) == with_50
    overdue = [make_ticket(tenant, at=timezone.now() - timedelta(hours=hours)) for hours in (30, 40)]
    assert _list_queries(admin_client, {"limit": 100, "overdue": "true"}) == with_50
    assert ids(admin_client.get(URL, {"overdue": "true"})) == [ticket.id for ticket in overdue]
    # An ordering against its index's direction reads the tickets without a value apart (they sort
    # last): one more query, only when those with a value leave room on the page.
    assert _list_queries(admin_client, {"limit": 10, "ordering": "last_message_at"}) == with_50
    assert _list_queries(admin_client, {"limit": 100, "ordering": "last_message_at"}) == with_50 + 1


def test_list_only_shows_the_tokens_tenant(admin, admin_client):
    other = make_tenant()
    make_ticket(other, subject="Theirs")
    mine = make_ticket(admin.tenant, subject="Mine")
    assert ids(admin_client.get(URL)) == [mine.id]
    assert ids(admin_client.get(URL, {"q": "Theirs"})) == []


def test_a_search_matching_more_than_the_id_cap_still_pages_newest_first(admin, admin_client, monkeypatch):
    """A common word (more matches than SEARCH_IDS_MAX) is tested ticket by ticket in the page's
    order instead of by collecting ids: the same tickets come back, newest first."""
    monkeypatch.setattr("tickets.selectors.SEARCH_IDS_MAX", 3)
    tenant = admin.tenant
    now = timezone.now()
    matching = [make_ticket(tenant, inbound=f"My lamp {i} is broken", at=now - timedelta(hours=i)) for i in range(6)]
    make_ticket(tenant, inbound="Where is my parcel?")
    make_ticket(make_tenant(), inbound="My lamp is broken too")  # another tenant's

    first = admin_client.get(URL, {"q": "lamp", "limit": 4}).json()
    second = admin_client.get(first["next"]).json()

    assert [t["id"] for t in first["results"] + second["results"]] == [t.id for t in matching]


def test_an_overdue_ticket_deleted_while_its_page_is_read_loses_no_other(admin, admin_client):
    """The overdue page reads its ids, then their rows: a ticket deleted in between leaves the page one
    short, and the next page still starts after the last row shown (no later ticket is skipped)."""
    overdue = [make_ticket(admin.tenant, at=timezone.now() - timedelta(hours=hours)) for hours in (30, 40, 50, 60)]
    deleted = False

    def delete_the_first_before_its_row_is_read(execute, sql, params, many, context):
        nonlocal deleted
        if not deleted and sql.startswith('SELECT "tickets_ticket"."id", "tickets_ticket"."subject"'):
            deleted = True  # first, so the delete's own queries go straight through
            overdue[0].delete()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(delete_the_first_before_its_row_is_read):
        first = admin_client.get(URL, {"overdue": "true", "limit": 2}).json()
    assert deleted
    assert [row["id"] for row in first["results"]] == [overdue[1].id, overdue[2].id]
    assert first["next_cursor"]
    rest = admin_client.get(URL, {"overdue": "true", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [row["id"] for row in rest["results"]] == [overdue[3].id] and rest["next_cursor"] is None
