"""Bulk writes the ORM does not offer, for PostgreSQL and SQLite.

On PostgreSQL a statement passes all its rows as one JSON parameter (`jsonb_to_recordset`), so its
text does not grow with the number of rows: psycopg parses it once and the server plans it cheaply. SQLite gets the
equivalent multi-row VALUES. Only quoted names from the models' meta and placeholders ever go
into the SQL text; every value is a parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS, connections, models


def _db():
    # The real wrapper of this thread, not the `connection` proxy: every attribute read on the
    # proxy goes through a thread-local lookup, and a bulk write reads it per value.
    return connections[DEFAULT_DB_ALIAS]


def _quote(name: str) -> str:
    return _db().ops.quote_name(name)


def _is_postgres() -> bool:
    return _db().vendor == "postgresql"


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


def _batches(columns: Sequence[models.Field], items: Sequence) -> list[Sequence]:
    if _is_postgres():
        return [items]  # one JSON parameter: the parameter count does not grow with the rows
    size = max(1, _db().ops.bulk_batch_size(columns, items))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper, what Django prepares for a JSONField
        return value.obj
    raise TypeError(f"{type(value).__name__} cannot go into a bulk write")


def _records(columns: Sequence[models.Field], rows: list[list]) -> tuple[str, list]:
    """All rows as one JSON parameter, typed back into columns by the server. Encoding JSON is done
    in C; psycopg's array adaptation would cost more Python time per value than the write itself."""
    db = _db()
    names = [f"v_{f.column}" for f in columns]
    definition = ", ".join(f"{_quote(name)} {f.db_type(db)}" for name, f in zip(names, columns, strict=True))
    payload = json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=_json_default)
    return f"jsonb_to_recordset(%s::jsonb) AS v ({definition})", [payload]


def _values(columns: Sequence[models.Field], rows: list[list]) -> tuple[str, list]:
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return "VALUES " + ", ".join([row_sql] * len(rows)), [value for row in rows for value in row]


def insert_ignoring_conflicts(objs: Sequence[models.Model], *, conflict_fields: Sequence[str],
                              returning: Sequence[str]) -> list[tuple]:
    """INSERT … ON CONFLICT (conflict_fields) DO NOTHING RETURNING returning.

    Unlike `bulk_create(ignore_conflicts=True)`, it tells exactly which rows this statement
    inserted, which is what lets concurrent pollers share work without check-then-insert races:
    the unique constraint decides, and each row is reported as new to one writer only.
    """
    if not objs:
        return []
    meta = type(objs[0])._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, models.AutoField)]
    columns = ", ".join(_quote(f.column) for f in fields)
    conflict = ", ".join(_quote(meta.get_field(name).column) for name in conflict_fields)
    returned = ", ".join(_quote(meta.get_field(name).column) for name in returning)

    db = _db()
    inserted: list[tuple] = []
    with _cursor() as cursor:
        for batch in _batches(fields, objs):
            rows = [[f.get_db_prep_save(f.pre_save(obj, add=True), db) for f in fields] for obj in batch]
            if _is_postgres():
                source, params = _records(fields, rows)
                source = f"SELECT * FROM {source}"
            else:
                source, params = _values(fields, rows)
            cursor.execute(
                f"INSERT INTO {_quote(meta.db_table)} ({columns}) {source} "
                f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returned}",
                params,
            )
            inserted.extend(cursor.fetchall())
    return inserted


def update_from_values(model: type[models.Model], rows: Sequence[dict], *, fields: Sequence[str]) -> int:
    """One UPDATE setting `fields` per primary key, from rows keyed by attribute name (`id`,
    `ticket_id`, …, as in a model's `__dict__`).

    `bulk_update` builds a CASE expression per row and field, which costs far more Python time than
    the database spends; here each row is a plain list of parameters.
    """
    if not rows:
        return 0
    meta = model._meta
    pk = meta.pk
    columns = [pk, *(meta.get_field(name) for name in fields)]
    table = _quote(meta.db_table)
    names = ", ".join(_quote(f"v_{f.column}") for f in columns)
    assignments = ", ".join(f"{_quote(f.column)} = v.{_quote(f'v_{f.column}')}" for f in columns[1:])
    match = f"{table}.{_quote(pk.column)} = v.{_quote(f'v_{pk.column}')}"
    db = _db()
    updated = 0
    with _cursor() as cursor:
        for batch in _batches(columns, rows):
            values = [[f.get_db_prep_save(row[f.attname], db) for f in columns] for row in batch]
            if _is_postgres():
                source, params = _records(columns, values)
                sql = f"UPDATE {table} SET {assignments} FROM {source} WHERE {match}"
            else:
                source, params = _values(columns, values)
                sql = f"WITH v ({names}) AS ({source}) UPDATE {table} SET {assignments} FROM v WHERE {match}"
            cursor.execute(sql, params)
            updated += cursor.rowcount
    return updated
