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
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.utils import timezone


class OnConflict(enum.Enum):
    """What an upsert does with one column of a row that already exists."""

    NEW = "new"  # take the proposed value
    LATEST = "latest"  # keep the later of the existing and proposed values
    KEEP = "keep"  # keep the existing value, or take the proposed one where it is NULL


def _db() -> BaseDatabaseWrapper:
    # The real wrapper of this thread, not the `connection` proxy: every attribute read on the
    # proxy goes through a thread-local lookup.
    return connections[DEFAULT_DB_ALIAS]


def _quote(name: str) -> str:
    return _db().ops.quote_name(name)


@contextmanager
def _cursor() -> Iterator[CursorWrapper]:
    """On PostgreSQL, a cursor binding its parameters on the server: Django's default client-side
    binding would escape the whole JSON payload into the SQL text. It shares the connection, hence
    the transaction, and Django wraps it as any cursor (errors, query logging, execute wrappers)."""
    db = _db()
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    import psycopg

    _connected(db)
    # _prepare_cursor is how Django wraps any cursor it makes (private, stable since Django 1.x).
    with db._prepare_cursor(psycopg.Cursor(db.connection)) as cursor:  # type: ignore[attr-defined]
        yield cursor


def _connected(db: BaseDatabaseWrapper) -> None:
    # What Django's own cursors do first: a persistent connection is checked once per request
    # (CONN_HEALTH_CHECKS), so one the server has closed is replaced instead of failing the request.
    db.close_if_health_check_failed()
    db.ensure_connection()


@functools.cache
def _c_timestamptz_loader() -> type | None:
    """psycopg's own timestamptz loader when its C implementation is installed (psycopg[binary])."""
    from psycopg import adapters, pq

    loader = adapters.get_loader(adapters.types["timestamptz"].oid, pq.Format.TEXT)
    return loader if pq.__impl__ != "python" and loader is not None else None


@contextmanager
def read_cursor() -> Iterator[CursorWrapper]:
    """A cursor for the API's hot reads (tickets.rows and the ticket selectors, the token's membership).

    On PostgreSQL it binds its parameters on the server, so psycopg prepares a statement run five
    times on the same connection (DATABASE_PREPARE_THRESHOLD: Django would leave it off) and
    PostgreSQL stops planning it again; and it reads timestamps
    with psycopg's C loader instead of the pure-Python one Django installs to force UTC: 0.27
    against 1.63 ms of CPU for a 26-row page of the ticket list (7 timestamps a row). The session's
    time zone is UTC (Django sets it with USE_TZ), so both give the same aware UTC datetimes. Else
    (SQLite) Django's cursor; without psycopg's C part, Django's timestamp loader.

    The psycopg cursor is kept with the connection and used again by the next read (`_kept_cursor`).

    Once prepared, a statement may run one generic plan, made for average values: a statement whose
    best plan depends on its values needs an index that keeps every plan cheap (tickets.rows.rows_fetch)."""
    db = _db()
    kept = _kept_cursor(db) if db.vendor == "postgresql" else None
    if kept is None:  # SQLite, or a read inside another (none today): a cursor of its own
        with _cursor() as cursor:
            if db.vendor == "postgresql":
                _fast_timestamps(db, cursor.cursor)
            yield cursor
        return
    try:
        # Django's wrapper (errors, query logging, execute wrappers), not closed on the way out: that
        # would close the kept cursor. _prepare_cursor is how Django wraps any cursor it makes.
        yield db._prepare_cursor(kept)  # type: ignore[attr-defined]
    finally:
        db.keybuzz_read_cursor_busy = False  # type: ignore[attr-defined]


def _kept_cursor(db: BaseDatabaseWrapper) -> Any:
    """The psycopg cursor of this connection for `read_cursor`, marked busy; None while it is.

    A new psycopg cursor per query copies the connection's adapters and finds each result column's
    loader again, where a kept one has them: a read of the token's membership took 140 us of CPU
    with a new cursor and 87 with the kept one, a page of the ticket list 278 and 220 (the API
    benchmark's 1M database, 2-core machine); a whole list request about 4% less, interleaved
    in one process. It belongs to the connection it was made on: a replaced connection (closed,
    restarted server) gets a new one. It holds its last result until the next read (at most a
    ticket's messages: what the request just read)."""
    import psycopg

    if getattr(db, "keybuzz_read_cursor_busy", False):
        return None
    _connected(db)
    kept = getattr(db, "keybuzz_read_cursor", None)
    if kept is None or kept.closed or kept.connection is not db.connection:
        kept = psycopg.Cursor(db.connection)
        _fast_timestamps(db, kept)
        db.keybuzz_read_cursor = kept  # type: ignore[attr-defined]
    db.keybuzz_read_cursor_busy = True  # type: ignore[attr-defined]
    return kept


def _fast_timestamps(db: BaseDatabaseWrapper, cursor: Any) -> None:
    loader = _c_timestamptz_loader()
    if loader is not None and db.timezone_name == "UTC":
        cursor.adapters.register_loader("timestamptz", loader)  # this cursor only: Django's keep theirs


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into a bulk write")


def _sqlite_batches(rows: Sequence[Mapping[str, Any]], width: int) -> list[Sequence[Mapping[str, Any]]]:
    # SQLite caps the number of parameters of a statement.
    size = max(1, (_db().features.max_query_params or 999) // max(width, 1))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _default(field: models.Field[Any, Any], now: datetime) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    return field.get_default()


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """A concrete field by name (a reverse relation has no column of its own)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise ValueError(f"{model._meta.label}.{name} is not a concrete field")
    return field


def _column(field: models.Field[Any, Any]) -> str:
    assert field.column is not None  # concrete fields only: see _field and concrete_fields
    return _quote(field.column)


def _conflict_update(table: str, field: models.Field[Any, Any], rule: OnConflict) -> str:
    column = _column(field)
    existing, proposed = f"{table}.{column}", f"EXCLUDED.{column}"
    if rule is OnConflict.NEW:
        value = proposed
    elif rule is OnConflict.KEEP:
        value = f"COALESCE({existing}, {proposed})"
    else:  # LATEST; PostgreSQL's GREATEST is SQLite's two-argument MAX, which NULL would defeat
        greatest = "GREATEST" if _db().vendor == "postgresql" else "MAX"
        value = f"{greatest}(COALESCE({existing}, {proposed}), {proposed})"
    return f"{column} = {value}"


@dataclass(frozen=True)
class _Insert:
    """The text of one shape of bulk insert, built once per process: building it costs more
    Python time than the database spends on a small batch."""

    varying: tuple[models.Field[Any, Any], ...]  # from the rows
    fixed: tuple[models.Field[Any, Any], ...]  # one value for all rows: `shared`, else the default
    head: str  # up to the rows' source
    tail: str  # ON CONFLICT … RETURNING …


@functools.lru_cache(maxsize=128)
def _insert_statement(
    model: type[models.Model],
    keys: frozenset[str],
    conflict_fields: tuple[str, ...],
    returning: tuple[str, ...],
    update: tuple[tuple[str, OnConflict], ...],
    vendor: str,
) -> _Insert:
    db = _db()
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, models.AutoField)]
    unknown = keys - {f.attname for f in fields}
    if unknown:  # a misspelt key would otherwise leave its column at the default
        raise ValueError(f"{meta.label} has no field {', '.join(sorted(unknown))}")
    varying = tuple(f for f in fields if f.attname in keys)
    fixed = tuple(f for f in fields if f.attname not in keys)
    table = _quote(meta.db_table)
    conflict = ", ".join(_column(_field(model, name)) for name in conflict_fields)
    if update:
        action = "DO UPDATE SET " + ", ".join(
            _conflict_update(table, _field(model, name), rule) for name, rule in update
        )
    else:
        action = "DO NOTHING"
    tail = f" ON CONFLICT ({conflict}) {action} RETURNING " + ", ".join(
        _column(_field(model, name)) for name in returning
    )
    if vendor == "postgresql":
        # Values common to all rows are parameters of the SELECT list, cast to their column's type;
        # the rows come as one JSON parameter, typed back by the server from the definition.
        select = ", ".join(f"CAST(%s AS {f.db_type(db)})" if f in fixed else f"v.{_quote(f.attname)}" for f in fields)
        definition = ", ".join(f"{_quote(f.attname)} {f.db_type(db)}" for f in varying)
        columns = ", ".join(_column(f) for f in fields)
        head = f"INSERT INTO {table} ({columns}) SELECT {select} FROM jsonb_to_recordset(%s::jsonb) AS v ({definition})"
    else:
        head = f"INSERT INTO {table} (" + ", ".join(_column(f) for f in (*varying, *fixed)) + ") "
    return _Insert(varying=varying, fixed=fixed, head=head, tail=tail)


def insert_rows(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict_fields: Sequence[str],
    returning: Sequence[str],
    shared: Mapping[str, Any] | None = None,
    update: Mapping[str, OnConflict] | None = None,
) -> list[tuple[Any, ...]]:
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
    db = _db()
    statement = _insert_statement(
        model, frozenset(rows[0]), tuple(conflict_fields), tuple(returning), tuple((update or {}).items()), db.vendor
    )
    shared = shared or {}
    if shared.keys() - {f.attname for f in statement.fixed}:
        raise ValueError(f"shared values {sorted(shared)} must be fields of {model._meta.label} absent from the rows")
    now = timezone.now()
    fixed = [
        f.get_db_prep_save(shared[f.attname] if f.attname in shared else _default(f, now), db) for f in statement.fixed
    ]
    with _cursor() as cursor:
        if db.vendor == "postgresql":
            cursor.execute(statement.head + statement.tail, [*fixed, json.dumps(rows, default=_json_default)])
            return cursor.fetchall()
        written: list[tuple[Any, ...]] = []
        width = len(statement.varying) + len(statement.fixed)
        row_sql = "(" + ", ".join(["%s"] * width) + ")"
        for batch in _sqlite_batches(rows, width):
            params: list = []
            for row in batch:
                params.extend(f.get_db_prep_save(row[f.attname], db) for f in statement.varying)
                params.extend(fixed)
            cursor.execute(statement.head + "VALUES " + ", ".join([row_sql] * len(batch)) + statement.tail, params)
            written.extend(cursor.fetchall())
        return written


# -- reads ----------------------------------------------------------------------------------------


# (column index, expression, its converters) for the columns of a row that have converters.
ConversionPlan = tuple[tuple[int, Any, tuple[Any, ...]], ...]


def conversion_plan(expressions: Sequence[Any]) -> ConversionPlan:
    """What the ORM's compiler applies to these columns read from this backend (JSON, and on SQLite
    datetimes and booleans): the backend's converters, then the field's. Columns without any are
    left out, so a row visits only the few that need it."""
    db = _db()
    plan = []
    for i, expression in enumerate(expressions):
        converters = tuple(db.ops.get_db_converters(expression) + expression.get_db_converters(db))
        if converters:
            plan.append((i, expression, converters))
    return tuple(plan)


def converted(row: Sequence[Any], plan: ConversionPlan) -> list[Any]:
    """The row's values as the ORM would give them (`plan`: `conversion_plan` of its columns)."""
    return rows_converted([row], plan)[0]


def rows_converted(rows: Sequence[Sequence[Any]], plan: ConversionPlan) -> list[list[Any]]:
    """`converted` of each row, the connection looked up once (a thread-local read each time)."""
    db = _db()
    result = []
    for row in rows:
        values = list(row)
        for i, expression, converters in plan:
            for convert in converters:
                values[i] = convert(values[i], expression, db)
        result.append(values)
    return result


@functools.cache
def _load_plan(model: type[models.Model], vendor: str) -> tuple[list[str], ConversionPlan]:
    """The attribute names of a model's concrete fields, and their conversion plan on this backend."""
    fields = model._meta.concrete_fields
    return [f.attname for f in fields], conversion_plan([f.get_col(model._meta.db_table) for f in fields])


def model_columns(model: type[models.Model], alias: str) -> str:
    """`alias."col1", alias."col2", …` for every concrete field, in the order `row_instances` reads."""
    return ", ".join(f"{alias}.{_quote(str(f.column))}" for f in model._meta.concrete_fields)


def row_instances(row: Sequence[Any], chain: Sequence[type[models.Model]]) -> list[models.Model]:
    """Model instances from one row of joined columns (each model's `model_columns`, in `chain`'s
    order), converted as the ORM converts them (JSON, booleans on SQLite, time zones)."""
    db = _db()
    instances: list[models.Model] = []
    start = 0
    for model in chain:
        names, plan = _load_plan(model, db.vendor)
        values = converted(row[start : start + len(names)], plan)
        instances.append(model.from_db(db.alias, names, values))
        start += len(names)
    return instances
