"""Read-only ticket queries. Each takes the tenant explicitly; none writes.

A list row's figures are columns of the ticket (the last inbound and last reply times, kept by the
writes; the last message's preview and the message counts, kept by the database's triggers) or
expressions of the page's one SELECT (the overdue flag, the order's status), so a page costs one
query whatever its size.

"Unanswered": an OPEN or PENDING ticket whose last buyer (INBOUND) message has no agent reply
(OUTBOUND, not FAILED) at or after it; both times are columns of the ticket, kept by the writes
(`Ticket.last_inbound_at`, `Ticket.last_reply_at`). "Overdue": unanswered and its response due time has passed.
A reply clears `response_due_at` (services.ticket_message_create), so the due time is the response
clock; the message check keeps the definition true even when a buyer message is filed late.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import (
    F,
    Q,
    QuerySet,
)
from django.utils import timezone

from keybuzz.db import model_columns, read_cursor, row_instances
from keybuzz.models import Tenant
from tickets import pagination, rows
from tickets.models import (
    Attachment,
    Ticket,
    TicketMessage,
    TicketStatus,
)

OLDEST_CANDIDATES = 20  # unanswered tickets with the earliest due times, among which the oldest wait is
ACTIVE_STATUSES = (TicketStatus.OPEN, TicketStatus.PENDING)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TicketFilters:
    statuses: list[str] = field(default_factory=list)
    channel: str | None = None
    assignee: str | int | None = None  # "me", "none" or a user id
    connection_id: str | None = None
    overdue: bool | None = None
    q: str = ""


def _unanswered_q() -> Q:
    return Q(status__in=ACTIVE_STATUSES, last_inbound_at__isnull=False) & (
        Q(last_reply_at__isnull=True) | Q(last_reply_at__lt=F("last_inbound_at"))
    )


def _overdue_q(now: datetime) -> Q:
    return _unanswered_q() & Q(response_due_at__lt=now)


def ticket_queryset(*, tenant: Tenant, now: datetime | None = None) -> QuerySet[Ticket]:
    """The tenant's tickets with everything a list row or the detail header shows, as model instances:
    what the documented serializers (TicketRowSerializer, TicketDetailSerializer) read. The API
    answers from tickets.rows; tests/tickets/test_fast_paths.py checks both agree."""
    return _with_figures(Ticket.objects.filter(tenant=tenant), now=now or timezone.now())


def _with_figures(queryset: QuerySet[Ticket], *, now: datetime) -> QuerySet[Ticket]:
    # The figures' SQL lives in tickets.rows, which the list and the detail read without the ORM.
    return queryset.select_related("assignee").annotate(**{name: rows.figure(name, now) for name in rows.FIGURES})


def overdue_ticket_count(*, tenant: Tenant | None = None, now: datetime | None = None) -> int:
    """How many tickets are overdue (the definition above): the tenant's, or with no tenant every
    tenant's, for the operators' metrics. One query."""
    now = now or timezone.now()
    queryset = Ticket.objects.all() if tenant is None else Ticket.objects.filter(tenant=tenant)
    return queryset.filter(_overdue_q(now)).count()


def ticket_page(
    *,
    tenant: Tenant,
    user_id: int,
    filters: TicketFilters,
    ordering: str,
    cursor_token: str | None,
    size: int,
    fields: Sequence[str],
    now: datetime | None = None,
) -> pagination.Page:
    """One page of the tenant's tickets matching `filters`, in `ordering`, after the cursor, as rows of
    `fields` (tickets.rows: what `.values(*fields)` of `ticket_queryset` gives).

    A search first takes the next SEARCH_WALK_PER_ROW x (size + 1) tickets of the page order (ids
    through the list's index) and tests them one by one (subject, customer, order id, messages). They
    are a prefix of the order, so the first matches among them are the page: a common word fills it
    there, in a few ms whatever the tenant's size, and a tenant with fewer tickets left is answered
    there in full. Only a word too rare to fill the page goes on to the trigram indexes
    (`rows.search_ids`), which then find few matches, each index scoped to the tenant (migration 0010)."""
    now = now or timezone.now()

    def tenant_tickets() -> rows.Where:
        return rows.where_tenant(tenant.pk)

    def filtered(where: rows.Where) -> rows.Where:
        rows.where_filters(
            where,
            user_id=user_id,
            statuses=filters.statuses,
            channel=filters.channel,
            assignee=filters.assignee,
            connection_id=filters.connection_id,
            overdue=filters.overdue,
            now=now,
        )
        return where

    def page_of(where: rows.Where) -> pagination.Page:
        return rows.rows_page(
            fields=fields,
            where=where,
            now=now,
            ordering=ordering,
            cursor_token=cursor_token,
            size=size,
        )

    if not filters.q:
        return page_of(filtered(tenant_tickets()))
    window = SEARCH_WALK_PER_ROW * (size + 1)
    walk = rows.ids_fetch(where=filtered(tenant_tickets()), ordering=ordering, cursor_token=cursor_token, limit=window)
    page = pagination.Page(rows=[], next_cursor=None)
    if walk:
        # By id alone (they are the tenant's): with `tenant_id =` too, PostgreSQL would also read the
        # tenant's entry of a trigram index (which leads with it), 30 ms for the largest tenant.
        walked = rows.where_ids(walk)
        rows.where_match(walked, filters.q)
        page = page_of(walked)
    if page.next_cursor or len(walk) < window:
        return page
    found = sorted(set(rows.search_ids(tenant_id=tenant.pk, text=filters.q, limit=SEARCH_IDS_MAX + 1)))
    if len(found) > SEARCH_IDS_MAX:  # a common word: tested ticket by ticket in the page's order
        everywhere = filtered(tenant_tickets())
        rows.where_match(everywhere, filters.q)
        return page_of(everywhere)
    if not found:
        return pagination.Page(rows=[], next_cursor=None)
    return page_of(filtered(rows.where_ids(found)))  # the matching ids, each of the tenant: by id alone


# A search first walks this many tickets per row of the page in the page's order (see ticket_page).
SEARCH_WALK_PER_ROW = 8
# A search matching more tickets than this is "common": it is answered by walking the inbox in its
# order and testing each ticket (a page fills after a few dozen), not by collecting every match.
SEARCH_IDS_MAX = 2000


def ticket_get(*, tenant: Tenant, ticket_id: int, now: datetime | None = None) -> Ticket | None:
    """One ticket of the tenant with its list figures, or None (also for another tenant's id)."""
    return ticket_queryset(tenant=tenant, now=now).filter(pk=ticket_id).first()


def ticket_row_get(
    *, tenant: Tenant, ticket_id: int, fields: Sequence[str], now: datetime | None = None
) -> dict[str, Any] | None:
    """`ticket_get` as a `.values(*fields)` row (what the detail answers), or None."""
    now = now or timezone.now()
    where = rows.where_tenant(tenant.pk)
    where.add('"tickets_ticket".id = %s', ticket_id)
    found = rows.rows_fetch(fields=fields, where=where, now=now)
    return found[0] if found else None


def ticket_messages(*, tenant: Tenant, ticket_id: int) -> list[TicketMessage]:
    """The ticket's messages in conversation order (notes included), with their authors.

    One written-out query (see tickets.rows: the ORM's select_related query cost more to build than
    to run). Their files: `ticket_files`."""
    with read_cursor() as cursor:
        cursor.execute(_messages_sql(), [rows.db_value("tenant_id", tenant.pk), ticket_id])
        found = cursor.fetchall()
    width = len(TicketMessage._meta.concrete_fields)
    messages = []
    for row in found:
        (message,) = row_instances(row[:width], (TicketMessage,))
        assert isinstance(message, TicketMessage)
        message.author = None if message.author_id is None else row_instances(row[width:], (User,))[0]  # type: ignore[assignment]
        messages.append(message)
    return messages


def ticket_files(*, tenant: Tenant, ticket_id: int) -> dict[int, list[Attachment]]:
    """The files of the ticket's messages, by message id, oldest first (attachment_ticket index).

    Written out: Django's prefetch_related built this query in 1.3 of the detail's 3.5 ms (cProfile)."""
    with read_cursor() as cursor:
        cursor.execute(_files_sql(), [rows.db_value("tenant_id", tenant.pk), ticket_id])
        found = cursor.fetchall()
    files: dict[int, list[Attachment]] = {}
    for row in found:
        (attachment,) = row_instances(row, (Attachment,))
        assert isinstance(attachment, Attachment)
        if attachment.message_id is not None:  # else an upload no reply has taken yet
            files.setdefault(attachment.message_id, []).append(attachment)
    return files


@functools.cache
def _messages_sql() -> str:
    # Names from the models' meta only; the two values are parameters.
    return (
        f"SELECT {model_columns(TicketMessage, 'm')}, {model_columns(User, 'u')} FROM tickets_ticketmessage m"  # noqa: S608
        " LEFT OUTER JOIN auth_user u ON u.id = m.author_id WHERE m.tenant_id = %s AND m.ticket_id = %s"
        " ORDER BY m.sent_at, m.id"
    )


@functools.cache
def _files_sql() -> str:
    return (
        f"SELECT {model_columns(Attachment, 'a')} FROM tickets_attachment a"  # noqa: S608
        " WHERE a.tenant_id = %s AND a.ticket_id = %s ORDER BY a.id"
    )


def attachment_get(*, tenant: Tenant, ticket_id: int, attachment_id: int) -> Attachment | None:
    """One file of one of the tenant's tickets, or None (also for another tenant's ids)."""
    return Attachment.objects.filter(tenant=tenant, ticket_id=ticket_id, pk=attachment_id).first()


_STATUS_COUNTS = "SELECT status, count FROM tickets_ticketstatuscount WHERE tenant_id = %s"
# Counting the tenant column (never NULL), which the partial indexes hold, not the id, which they do
# not: PostgreSQL then counts from the index alone (index-only scan).
_BACKLOG = 'SELECT COUNT("tickets_ticket".tenant_id) FROM "tickets_ticket" WHERE "tickets_ticket".tenant_id = %s AND '
_ACTIVE = f'"tickets_ticket".status IN {rows.ACTIVE_SQL}'
# The unanswered and the overdue come from one read of ticket_unanswered_due (the overdue are the
# unanswered whose due time has passed).
_BACKLOG_COUNTS = (
    f"SELECT ({_BACKLOG}{_ACTIVE} AND assignee_id IS NULL), ({_BACKLOG}{_ACTIVE} AND assignee_id = %s), w.n, w.late"  # noqa: S608
    ' FROM (SELECT COUNT("tickets_ticket".tenant_id) AS n, COUNT("tickets_ticket".tenant_id) FILTER (WHERE'
    f' "tickets_ticket".response_due_at < %s) AS late FROM "tickets_ticket" WHERE "tickets_ticket".tenant_id = %s'
    f" AND {rows.UNANSWERED_SQL}) w"
)
# The buyer has been waiting since the first INBOUND message after the last live reply. The response
# clock is that moment + 24 h, so the longest waits are among the earliest due times: the exact time
# is computed for those few only (ticket_unanswered_due), not for every ticket.
_OLDEST_UNANSWERED = (
    "SELECT id, waiting_since FROM (SELECT c.id, (SELECT m.sent_at FROM tickets_ticketmessage m"  # noqa: S608
    " WHERE m.ticket_id = c.id AND m.direction = 'INBOUND' AND m.sent_at > COALESCE(c.last_reply_at, %s)"
    ' ORDER BY m.sent_at LIMIT 1) AS waiting_since FROM (SELECT "tickets_ticket".id, "tickets_ticket".last_reply_at'
    f' FROM "tickets_ticket" WHERE "tickets_ticket".tenant_id = %s AND {rows.UNANSWERED_SQL}'
    f' ORDER BY "tickets_ticket".response_due_at ASC NULLS LAST, "tickets_ticket".id LIMIT {OLDEST_CANDIDATES}) c) x'
    " WHERE waiting_since IS NOT NULL ORDER BY waiting_since, id LIMIT 1"
)


@dataclass(frozen=True)
class TicketStats:
    by_status: dict[str, int]
    total: int
    unassigned: int  # OPEN or PENDING with nobody assigned
    assigned_to_me: int  # OPEN or PENDING assigned to the caller
    unanswered: int
    overdue: int
    oldest_unanswered_since: datetime | None  # when the longest-waiting buyer started waiting
    oldest_unanswered_ticket_id: int | None
    oldest_unanswered_age_seconds: int | None


def ticket_stats(*, tenant: Tenant, user_id: int, now: datetime | None = None) -> TicketStats:
    """The inbox header's figures in three queries, each reading a counter or the backlog, never the
    tenant's history: at 1M tickets, 474 ms for a 200,000-ticket tenant when they counted every ticket.

    `by_status` and `total` are the counters the database keeps (TicketStatusCount); the others read
    partial indexes that hold only OPEN and PENDING tickets (ticket_active_assignee) or only the
    unanswered ones (ticket_unanswered_due), index-only. Written out like tickets.rows, for the same
    reason: the ORM spent more time building these four queries than PostgreSQL answering them."""
    now = now or timezone.now()
    tenant_id = rows.db_value("tenant_id", tenant.pk)
    with read_cursor() as cursor:
        cursor.execute(_STATUS_COUNTS, [tenant_id])
        counted = dict(cursor.fetchall())
        cursor.execute(_BACKLOG_COUNTS, [tenant_id, tenant_id, user_id, rows.now_param(now), tenant_id])
        unassigned, assigned_to_me, unanswered, overdue = cursor.fetchone()
        cursor.execute(_OLDEST_UNANSWERED, [rows.now_param(_EPOCH), tenant_id])
        oldest = cursor.fetchone()
    by_status = {status.value: int(counted.get(status.value, 0)) for status in TicketStatus}
    oldest_id, oldest_since = (oldest[0], rows.datetime_from_db(oldest[1])) if oldest else (None, None)
    return TicketStats(
        by_status=by_status,
        total=sum(by_status.values()),
        unassigned=unassigned,
        assigned_to_me=assigned_to_me,
        unanswered=unanswered,
        overdue=overdue,
        oldest_unanswered_since=oldest_since,
        oldest_unanswered_ticket_id=oldest_id,
        oldest_unanswered_age_seconds=max(0, int((now - oldest_since).total_seconds())) if oldest_since else None,
    )
