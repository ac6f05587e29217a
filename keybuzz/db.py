"""Bulk writes the ORM does not offer, for PostgreSQL and SQLite.

Rows are plain dicts keyed by attribute name (`ticket_id`, `sent_at`, …): building a model
instance per row and preparing each value through its field costs more Python time than the
database spends writing the row. Values shared by every row of a statement (`shared`) and the
fields' defaults are sent once, not per row.

On PostgreSQL a statement passes all its rows as one JSON parameter (`jsonb_to_recordset`), so its
text does not grow with the number of rows: psycopg parses it once and the server plans it
cheaply. SQLite gets the equivalent multi-row VALUES. Only quoted names from the models' meta and
placeholders ever go into the SQL text; every value is a parameter.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils import timezone


class OnConflict(enum.Enum):
    """What an upsert does with one column of a row that already exists."""

    NEW = "new"  # take the proposed value
    LATEST = "latest"  # keep the later of the existing and proposed values
    KEEP = "keep"  # keep the existing value, or take the proposed one where it is NULL


def _db():
    # The real wrapper of this thread, not the `connection` proxy: every attribute read on the
    # proxy goes through a thread-local lookup.
    return connections[DEFAULT_DB_ALIAS]


def _quote(name: str) -> str:
    return _db().ops.quote_name(name)


@contextmanager
def _cursor():
    """On PostgreSQL, a cursor binding its parameters on the server: Django's default client-side
    binding would escape the whole JSON payload into the SQL text. It shares the connection, hence
    the transaction, and Django wraps it as any cursor (errors, query logging, execute wrappers)."""
    db = _db()
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    import psycopg

    db.ensure_connection()
    with db._prepare_cursor(psycopg.Cursor(db.connection)) as cursor:
        yield cursor


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into a bulk write")


def _recordset(fields: Sequence[models.Field], rows: Sequence[Mapping[str, Any]]) -> tuple[str, list]:
    """`jsonb_to_recordset(…) AS v (…)` over the rows' values of `fields`, and its one parameter.
    Encoding JSON is done in C; psycopg's array adaptation would cost more Python time per value
    than the write itself. The server types each value back by its column's definition."""
    db = _db()
    definition = ", ".join(f"{_quote(f.attname)} {f.db_type(db)}" for f in fields)
    return f"jsonb_to_recordset(%s::jsonb) AS v ({definition})", [json.dumps(rows, default=_json_default)]


def _values(fields: Sequence[models.Field], rows: Sequence[Mapping[str, Any]], *,
            shared: Mapping[str, Any] | None = None) -> tuple[str, list]:
    """Multi-row VALUES for SQLite: each value prepared by its field, `shared` repeated per row."""
    db = _db()
    shared = shared or {}
    prepared_shared = [f.get_db_prep_save(shared[f.attname], db) for f in fields if f.attname in shared]
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list = []
    for row in rows:
        params.extend(f.get_db_prep_save(row[f.attname], db) for f in fields if f.attname not in shared)
        params.extend(prepared_shared)
    return "VALUES " + ", ".join([row_sql] * len(rows)), params


def _sqlite_batches(rows: Sequence, width: int) -> list[Sequence]:
    # SQLite caps the number of parameters of a statement.
    size = max(1, _db().features.max_query_params // max(width, 1))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _default(field: models.Field, now: datetime) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    return field.get_default()


def _conflict_update(table: str, field: models.Field, rule: OnConflict) -> str:
    column = _quote(field.column)
    existing, proposed = f"{table}.{column}", f"EXCLUDED.{column}"
    if rule is OnConflict.NEW:
        value = proposed
    elif rule is OnConflict.KEEP:
        value = f"COALESCE({existing}, {proposed})"
    else:  # LATEST; PostgreSQL's GREATEST is SQLite's two-argument MAX, which NULL would defeat
        greatest = "GREATEST" if _db().vendor == "postgresql" else "MAX"
        value = f"{greatest}(COALESCE({existing}, {proposed}), {proposed})"
    return f"{column} = {value}"


def insert_rows(model: type[models.Model], rows: Sequence[Mapping[str, Any]], *, conflict_fields: Sequence[str],
                returning: Sequence[str], shared: Mapping[str, Any] | None = None,
                update: Mapping[str, OnConflict] | None = None) -> list[tuple]:
    """INSERT … ON CONFLICT (conflict_fields) DO NOTHING (or DO UPDATE SET `update`) RETURNING `returning`.

    `rows` hold the per-row values by attribute name, all with the same keys; `shared` the values
    common to every row; any other field gets its default (`auto_now(_add)` fields: now).

    Unlike `bulk_create(ignore_conflicts=True)`, it tells exactly which rows this statement
    inserted (or, with `update`, inserted or updated), which is what lets concurrent pollers share
    work without check-then-insert races: the unique constraint decides, and each row is reported
    as new to one writer only.
    """
    if not rows:
        return []
    meta = model._meta
    db = _db()
    fields = [f for f in meta.concrete_fields if not isinstance(f, models.AutoField)]
    varying = [f for f in fields if f.attname in rows[0]]
    now = timezone.now()
    fixed = {f.attname: (shared[f.attname] if shared and f.attname in shared else _default(f, now))
             for f in fields if f.attname not in rows[0]}
    table = _quote(meta.db_table)
    conflict = ", ".join(_quote(meta.get_field(name).column) for name in conflict_fields)
    returned = ", ".join(_quote(meta.get_field(name).column) for name in returning)
    if update:
        action = "DO UPDATE SET " + ", ".join(_conflict_update(table, meta.get_field(name), rule)
                                              for name, rule in update.items())
    else:
        action = "DO NOTHING"

    if db.vendor == "postgresql":
        columns = ", ".join(_quote(f.column) for f in fields)
        recordset, params = _recordset(varying, rows)
        # Values common to all rows are parameters of the SELECT list, cast to their column's type.
        select = ", ".join(f"CAST(%s AS {f.db_type(db)})" if f.attname in fixed else f"v.{_quote(f.attname)}"
                           for f in fields)
        fixed_params = [f.get_db_prep_save(fixed[f.attname], db) for f in fields if f.attname in fixed]
        with _cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {select} FROM {recordset} "
                           f"ON CONFLICT ({conflict}) {action} RETURNING {returned}", [*fixed_params, *params])
            return cursor.fetchall()

    order = [*varying, *(f for f in fields if f.attname in fixed)]
    columns = ", ".join(_quote(f.column) for f in order)
    written: list[tuple] = []
    with _cursor() as cursor:
        for batch in _sqlite_batches(rows, len(order)):
            source, params = _values(order, batch, shared=fixed)
            cursor.execute(f"INSERT INTO {table} ({columns}) {source} ON CONFLICT ({conflict}) {action} "
                           f"RETURNING {returned}", params)
            written.extend(cursor.fetchall())
    return written


def update_rows(model: type[models.Model], rows: Sequence[Mapping[str, Any]], *, fields: Sequence[str]) -> int:
    """One UPDATE setting `fields` per primary key, from rows keyed by attribute name (`id`,
    `ticket_id`, …).

    `bulk_update` builds a CASE expression per row and field, which costs far more Python time than
    the database spends; here each row is a plain list of parameters.
    """
    if not rows:
        return 0
    meta = model._meta
    pk = meta.pk
    columns = [pk, *(meta.get_field(name) for name in fields)]
    table = _quote(meta.db_table)
    assignments = ", ".join(f"{_quote(f.column)} = v.{_quote(f.attname)}" for f in columns[1:])
    match = f"{table}.{_quote(pk.column)} = v.{_quote(pk.attname)}"
    with _cursor() as cursor:
        if _db().vendor == "postgresql":
            source, params = _recordset(columns, rows)
            cursor.execute(f"UPDATE {table} SET {assignments} FROM {source} WHERE {match}", params)
            return cursor.rowcount
        names = ", ".join(_quote(f.attname) for f in columns)
        updated = 0
        for batch in _sqlite_batches(rows, len(columns)):
            source, params = _values(columns, batch)
            cursor.execute(f"WITH v ({names}) AS ({source}) UPDATE {table} SET {assignments} FROM v WHERE {match}",
                           params)
            updated += cursor.rowcount
        return updated
