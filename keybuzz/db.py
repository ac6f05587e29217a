"""Database helpers the ORM does not offer."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def insert_ignoring_conflicts(objs: Sequence[models.Model], *, conflict_fields: Sequence[str],
                              returning: Sequence[str]) -> list[tuple]:
    """INSERT … ON CONFLICT (conflict_fields) DO NOTHING RETURNING returning, for PostgreSQL and SQLite.

    Unlike `bulk_create(ignore_conflicts=True)`, it tells exactly which rows this statement
    inserted, which is what lets concurrent pollers share work without check-then-insert races:
    the unique constraint decides, and each row is reported as new to one writer only.
    """
    if not objs:
        return []
    model = type(objs[0])
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, models.AutoField)]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in conflict_fields)
    returned = ", ".join(quote(meta.get_field(name).column) for name in returning)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    batch_size = max(1, connection.ops.bulk_batch_size(fields, objs))

    rows: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(objs), batch_size):
            batch = objs[start:start + batch_size]
            params: list = []
            for obj in batch:
                params.extend(f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields)
            # Only quoted names from the model's meta and placeholders go into the text.
            sql = (f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_sql] * len(batch))} "  # noqa: S608
                   f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returned}")
            cursor.execute(sql, params)
            rows.extend(cursor.fetchall())
    return rows
