"""The list's and the detail's rows, as the SQL of one SELECT written out and built once per shape.

The ORM rebuilt and recompiled the same query (eight figure subqueries, the assignee join, the
filters, the keyset condition, the order) on every request: on the API benchmark's database that
was 3.5 of a first list page's 8 ms in-process, twice what PostgreSQL spent answering it. Here the
SELECT list is built once per tuple of fields (`_select`); a request only joins a few WHERE
fragments and passes its values as parameters. The values come back converted exactly as
`.values(*fields)` converts them (the backend's and the fields' converters, applied in the same
order), and tests/tickets/test_fast_paths.py checks the rows against the ORM's.

The search (selectors.ticket_page) is written out the same way: its match test is Django's
`icontains` SQL for each backend (`connection.ops.lookup_cast` and `connection.operators`), so it
compares exactly what the ORM compared and PostgreSQL still uses the trigram indexes built on
`UPPER(column)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import BooleanField, CharField, DateTimeField, Field
from django.db.models.expressions import RawSQL

from keybuzz.db import ConversionPlan, conversion_plan, converted, read_cursor, rows_converted
from tickets import pagination
from tickets.models import Ticket

ACTIVE_SQL = "('OPEN', 'PENDING')"  # TicketStatus.OPEN, PENDING: literal, so PostgreSQL matches the partial indexes

_T = '"tickets_ticket"'
_U = '"auth_user"'
# Unanswered: active, and a buyer message after the last live reply (selectors' module docstring);
# the same text as the partial index ticket_unanswered_due's condition, so PostgreSQL uses it.
UNANSWERED_SQL = (
    f"{_T}.status IN {ACTIVE_SQL} AND {_T}.last_inbound_at IS NOT NULL"
    f" AND ({_T}.last_reply_at IS NULL OR {_T}.last_reply_at < {_T}.last_inbound_at)"
)
OVERDUE_SQL = f"{UNANSWERED_SQL} AND {_T}.response_due_at < %s"  # one parameter: now

# The list's per-ticket figures computed as it reads: name → (SQL expression, output field).
# `is_overdue` takes one parameter, now. The preview and the counts of the ticket's messages are
# columns of the ticket, kept by the database (Ticket.MESSAGE_FIGURES, migration tickets 0015).
FIGURES: dict[str, tuple[str, Field[Any, Any]]] = {
    "is_overdue": (f"CASE WHEN {OVERDUE_SQL} THEN TRUE ELSE FALSE END", BooleanField()),
    # The order's status alone, not its whole context (items, packages: about half a kilobyte of JSON
    # a ticket once sync_orders has fetched the order), which the list sent over and parsed for every
    # row to show one string: 1.48 instead of 1.30 ms of CPU a list request at 1M tickets.
    # A non-empty JSON string, else NULL; SQLite's form is in _VENDOR_SQL.
    "order_status": (
        f"CASE WHEN jsonb_typeof({_T}.order_context -> 'status') = 'string'"
        f" THEN NULLIF({_T}.order_context ->> 'status', '') END",
        CharField(),
    ),
}
# FIGURES whose SQL differs on SQLite (its JSON functions).
_VENDOR_SQL: dict[tuple[str, str], str] = {
    ("order_status", "sqlite"): (
        f"CASE WHEN json_type({_T}.order_context, '$.status') = 'text'"
        f" THEN NULLIF(json_extract({_T}.order_context, '$.status'), '') END"
    ),
}


def _figure_sql(name: str, vendor: str) -> tuple[str, Field[Any, Any]]:
    sql, output = FIGURES[name]
    return _VENDOR_SQL.get((name, vendor), sql), output


def now_param(now: datetime) -> Any:
    """`now` as the backend compares it with a stored datetime (SQLite compares text)."""
    return connection.ops.adapt_datetimefield_value(now)


def figure(name: str, now: datetime) -> RawSQL:
    """One of FIGURES as an ORM expression (for the querysets that still need one)."""
    sql, output = _figure_sql(name, connection.vendor)
    # Only the constant SQL above reaches here; the one value goes as a parameter.
    return RawSQL(sql, [now_param(now)] if "%s" in sql else [], output)  # noqa: S611


@functools.cache
def _datetime_plan(vendor: str) -> ConversionPlan:
    return conversion_plan([RawSQL("", [], DateTimeField())])


def datetime_from_db(value: Any) -> datetime | None:
    """A datetime column read with a plain cursor, as the ORM would give it (SQLite returns text)."""
    return converted([value], _datetime_plan(connection.vendor))[0]


@dataclass(frozen=True)
class _Select:
    columns: str  # SELECT …, `now` parameters first
    joins: str  # LEFT OUTER JOIN auth_user …, after tickets_ticket
    now_params: int  # how many times `now` is a parameter of the SELECT list
    names: tuple[str, ...]
    converters: ConversionPlan

    def sql(self, source: str = _T) -> str:
        """The SELECT from `source`: the table, or a FROM clause that ends with it (a page's ids joined)."""
        return f"{self.columns} FROM {source} {self.joins}"


@functools.cache
def _select(fields: tuple[str, ...], vendor: str) -> _Select:
    ops = connection.ops
    columns, expressions, now_params = [], [], 0
    for name in fields:
        if name in FIGURES:
            sql, output = _figure_sql(name, vendor)
            expression: Any = RawSQL(sql, [], output)  # noqa: S611  (constant SQL)
            now_params += sql.count("%s")
            columns.append(f"({sql}) AS {ops.quote_name(name)}")
        else:
            model, table, attname = (User, _U, name.split("__", 1)[1]) if "__" in name else (Ticket, _T, name)
            field = model._meta.get_field(attname)  # by attribute name too ("assignee_id")
            assert isinstance(field, Field)
            expression = field.get_col(model._meta.db_table)
            columns.append(f"{table}.{ops.quote_name(str(field.column))}")
        expressions.append(expression)
    # Names from the models' meta and the constant SQL above only: every value is a parameter.
    return _Select(
        columns=f"SELECT {', '.join(columns)}",
        joins=f"LEFT OUTER JOIN {_U} ON ({_T}.assignee_id = {_U}.id)",
        now_params=now_params,
        names=fields,
        converters=conversion_plan(expressions),
    )


@dataclass
class Where:
    """WHERE fragments and their parameters, in order."""

    sql: list[str]
    params: list[Any]

    def add(self, sql: str, *params: Any) -> None:
        self.sql.append(sql)
        self.params.extend(params)

    def extended(self, sql: str, *params: Any) -> Where:
        """A copy with one more fragment."""
        return Where([*self.sql, sql], [*self.params, *params])


def where_tenant(tenant_id: Any) -> Where:
    """The tenant's tickets. Its id reaches PostgreSQL as `(SELECT %s::uuid)`, run once per execution
    before the scan (an InitPlan) and still an index key, but not seen by the planner: the statement
    then has one plan for every tenant, so after five runs PostgreSQL keeps that generic plan instead
    of planning each request again. Given the id, the largest tenant's statistics (a fifth of the
    tickets) made each custom plan look cheaper than the generic one, which it never adopted:
    planning was 0.6 ms of a 1.2 ms list query at 1M tickets, for the same plan (the inbox's index
    walked in order until the page is full, whatever the tenant). That one plan is made for the
    table's average tenant, which migration 0014 tells PostgreSQL is a large one (1% of the
    tickets), and rows_fetch keeps it cheap for every tenant."""
    tenant = "(SELECT %s::uuid)" if connection.vendor == "postgresql" else "%s"
    return Where([f"{_T}.tenant_id = {tenant}"], [db_value("tenant_id", tenant_id)])


def db_value(attname: str, value: Any) -> Any:
    """A value of a ticket field as the backend stores it (a UUID on SQLite: its hex)."""
    field = Ticket._meta.get_field(attname)
    assert isinstance(field, Field)
    return field.get_db_prep_value(field.to_python(value), connection)


def where_filters(where: Where, *, user_id: int, statuses: Sequence[str], channel: str | None,
                  assignee: str | int | None, connection_id: str | None, overdue: bool | None,
                  now: datetime) -> None:  # fmt: skip
    """The list's filters but the search (selectors.TicketFilters, validated by the view)."""
    if statuses:
        where.add(f"{_T}.status IN ({', '.join(['%s'] * len(statuses))})", *statuses)
    if channel:
        where.add(f"{_T}.channel = %s", channel)
    if assignee == "me":
        where.add(f"{_T}.assignee_id = %s", user_id)
    elif assignee == "none":
        where.add(f"{_T}.assignee_id IS NULL")
    elif assignee is not None:
        where.add(f"{_T}.assignee_id = %s", int(assignee))
    if connection_id:
        where.add(f"{_T}.connection_id = %s", db_value("connection_id", connection_id))
    if overdue is True:
        where.add(f"({OVERDUE_SQL})", now_param(now))
    elif overdue is False:  # not overdue, NULLs included: what `exclude()` of the condition means
        where.add(f"NOT (CASE WHEN {OVERDUE_SQL} THEN TRUE ELSE FALSE END)", now_param(now))


def where_ids(ids: Sequence[int]) -> Where:
    """Tickets by id alone (ids already scoped to the tenant by the query that found them)."""
    if connection.vendor == "postgresql":  # one array parameter: the statement's text stays the same
        return Where([f"{_T}.id = ANY(%s)"], [list(ids)])
    return Where([f"{_T}.id IN ({', '.join(['%s'] * len(ids))})"], list(ids))


def _contains(column: str, internal_type: str) -> str:
    """Django's `icontains` of `column`, one LIKE parameter: UPPER(col::text) LIKE UPPER(%s) on PostgreSQL."""
    operator = connection.operators["icontains"]  # type: ignore[attr-defined]  # every backend has it; the stubs lack it
    return f"{connection.ops.lookup_cast('icontains', internal_type) % column} {operator}"


def like_param(text: str) -> str:
    """`icontains`'s parameter: the text with LIKE's wildcards escaped, between two %."""
    return f"%{connection.ops.prep_for_like_query(text)}%"


_TICKET_TEXT = ("subject", "customer_name", "customer_ref", "order_id")


def where_match(where: Where, text: str) -> None:
    """The ticket itself tested: `text` in its subject, customer, order id or one of its messages.

    The messages' test is a scalar subquery (the ticket's id if one of its messages matches), not
    EXISTS: PostgreSQL may run an EXISTS once for every matching message of every tenant and hash
    the result (32 ms for a rare word at 1M tickets, far more for a common one), where this runs per
    ticket tested, through the ticket's messages (ticketmsg_ticket_sent)."""
    fields = [_contains(f"{_T}.{connection.ops.quote_name(name)}", "CharField") for name in _TICKET_TEXT]
    message = (
        f"{_T}.id = (SELECT m.ticket_id FROM tickets_ticketmessage m WHERE m.ticket_id = {_T}.id"  # noqa: S608
        f" AND {_contains('m.body', 'TextField')} LIMIT 1)"
    )
    where.add(f"({' OR '.join([*fields, message])})", *[like_param(text)] * (len(fields) + 1))


def search_ids(*, tenant_id: Any, text: str, limit: int) -> list[int]:
    """Up to `limit` ids (repeats included) of the tenant's tickets with `text` in the subject,
    customer, order id or a message: one lookup per side through the trigram indexes, which lead
    with the tenant (migration tickets 0010: GIN on (tenant_id, UPPER(column) gin_trgm_ops))."""
    fields = " OR ".join(_contains(f"t.{connection.ops.quote_name(name)}", "CharField") for name in _TICKET_TEXT)
    # UNION ALL streams and stops at the limit (UNION would collect and deduplicate every match first).
    sql = (
        f"SELECT t.id FROM tickets_ticket t WHERE t.tenant_id = %s AND ({fields})"  # noqa: S608
        f" UNION ALL SELECT m.ticket_id FROM tickets_ticketmessage m WHERE m.tenant_id = %s"
        f" AND {_contains('m.body', 'TextField')} LIMIT {int(limit)}"
    )
    tenant = db_value("tenant_id", tenant_id)
    params = [tenant, *[like_param(text)] * len(_TICKET_TEXT), tenant, like_param(text)]
    with read_cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def ids_fetch(*, where: Where, ordering: str, cursor_token: str | None, limit: int) -> list[int]:
    """The ids of the first `limit` tickets after the cursor, in `ordering` (the list's index)."""

    def ids_of(part: Where, order_by: str, count: int) -> list[int]:
        sql = f"SELECT {_T}.id FROM {_T} WHERE {' AND '.join(part.sql)}"  # noqa: S608
        sql += f" ORDER BY {order_by} LIMIT {int(count)}"
        with read_cursor() as cursor:
            cursor.execute(sql, part.params)
            return [row[0] for row in cursor.fetchall()]

    return _after_cursor(where, cursor_token, ordering, limit, ids_of)


_Found = TypeVar("_Found")


def _after_cursor(
    where: Where,
    cursor_token: str | None,
    ordering: str,
    limit: int,
    read: Callable[[Where, str, int], list[_Found]],
) -> list[_Found]:
    """Up to `limit` of the tickets of `where` after the cursor, in `ordering`: `read(part, order_by,
    count)` of each of _after_parts' conditions in turn, until `limit` are found."""
    found: list[_Found] = []
    for part, order_by in _after_parts(where, cursor_token, ordering):
        found += read(part, order_by, limit - len(found))
        if len(found) >= limit:
            break
    return found


# Each ordering's column → whether its index (tickets.models) holds it descending, NULLS LAST either way.
_INDEX_DESCENDING = {"last_message_at": True, "response_due_at": False}


def _after_parts(where: Where, cursor_token: str | None, ordering: str) -> list[tuple[Where, str]]:
    """The tickets of `where` strictly after the cursor's row in `ordering` (NULLs last: the ORM's
    keyset condition, which a test compares with), as conditions to read one after the other until the page
    is full, each with its ORDER BY: first those with a value beyond the cursor's, `(value, id) <
    (%s, %s)` (or `>`), then those without a value, which sort last. PostgreSQL starts the index scan
    at a row comparison; the same test written with OR (and `OR value IS NULL` in it) was only a
    filter, so a page 10,000 tickets deep read the 10,000 before it: 8 ms for the largest tenant at 1M
    tickets. A cursor without a value is already among the last ones: one condition.

    An ordering against its index's direction (oldest activity first, latest due time first) reads the
    index backwards, which gives the NULLs first: there the two parts are read apart even without a
    cursor, each ordered with the NULLs where the index has them (the same rows, since a part's values
    are all NULL or none is). Else PostgreSQL read and sorted every ticket of the tenant: 300 ms for
    the largest at 1M tickets. Other orderings without a cursor: `where` itself."""
    name, descending = pagination.ORDERINGS[ordering]
    backwards = descending != _INDEX_DESCENDING[name]
    order_by = _order_by(ordering, nulls_first=backwards)
    column, beyond = f"{_T}.{connection.ops.quote_name(name)}", "<" if descending else ">"
    if not cursor_token:
        if not backwards:
            return [(where, order_by)]
        return [(where.extended(f"{column} IS NOT NULL"), order_by), (where.extended(f"{column} IS NULL"), order_by)]
    cursor = pagination.decode_cursor(cursor_token, ordering=ordering)
    if cursor.value is None:
        return [(where.extended(f"{column} IS NULL AND {_T}.id {beyond} %s", cursor.last_id), order_by)]
    value = db_value(name, cursor.value)
    return [
        (where.extended(f"({column}, {_T}.id) {beyond} (%s, %s)", value, cursor.last_id), order_by),
        (where.extended(f"{column} IS NULL"), order_by),
    ]


def _order_by(ordering: str, *, nulls_first: bool = False) -> str:
    """`ordering` as SQL; `nulls_first` only for rows whose values are all NULL or none is."""
    name, descending = pagination.ORDERINGS[ordering]
    direction, nulls = "DESC" if descending else "ASC", "FIRST" if nulls_first else "LAST"
    return f"{_T}.{connection.ops.quote_name(name)} {direction} NULLS {nulls}, {_T}.id {direction}"


def rows_fetch(
    *,
    fields: Sequence[str],
    where: Where,
    now: datetime,
    order_by: str = "",
    limit: int = 0,
) -> list[dict[str, Any]]:
    """The rows of `fields` of the tickets in `where`: all of them (the detail's one), or the first
    `limit` in `order_by` (a page: both or neither)."""
    assert bool(order_by) == bool(limit), "a page has both an order and a limit"
    select = _select(tuple(fields), connection.vendor)
    condition = " AND ".join(where.sql)
    if not limit:
        sql = f"{select.sql()} WHERE {condition}"
    else:
        # The page's ids first, then their rows. Only the ids' query walks the tenant's tickets, through
        # an index that holds every column it reads (tickets.models, migration 0013): whatever plan
        # PostgreSQL settles on for it, the assignee's join and the figures run for the page's rows
        # alone. In one statement, the prepared plan once followed the average tenant: with 20,000
        # one-ticket tenants beside the benchmark's it became a scan of the whole tenant with the
        # figures (then two LATERAL joins on the messages) for every ticket, then a sort (127 to 174
        # ms for a tenant of 20,000 tickets, 0.7 now).
        page = f"SELECT {_T}.id FROM {_T} WHERE {condition} ORDER BY {order_by} LIMIT {int(limit)}"  # noqa: S608
        sql = f"{select.sql(f'({page}) page JOIN {_T} ON ({_T}.id = page.id)')} ORDER BY {order_by}"
    params = [now_param(now)] * select.now_params + where.params
    with read_cursor() as cursor:
        cursor.execute(sql, params)
        raw_rows = cursor.fetchall()
    names = select.names
    return [dict(zip(names, values, strict=True)) for values in rows_converted(raw_rows, select.converters)]


def rows_page(*, fields: Sequence[str], where: Where, now: datetime, ordering: str, cursor_token: str | None,
              size: int) -> pagination.Page:  # fmt: skip
    """A page of these rows: size + 1 rows in `ordering` after the cursor (the extra one says there is a next page)."""

    def rows_of(part: Where, order_by: str, count: int) -> list[dict[str, Any]]:
        return rows_fetch(fields=fields, where=part, now=now, order_by=order_by, limit=count)

    rows = _after_cursor(where, cursor_token, ordering, size + 1, rows_of)
    return pagination.page_of(rows, ordering=ordering, size=size)
