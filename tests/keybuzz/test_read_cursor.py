"""keybuzz.db.read_cursor, the API's hot reads: on PostgreSQL one psycopg cursor is kept with the
connection and used by read after read. Whatever happened to the read before (a read inside
another, a failed statement, a closed connection), a read answers its own query, and Django still
sees every query (the query-count tests and execute wrappers depend on it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from keybuzz.db import read_cursor

pytestmark = pytest.mark.django_db


def _read(sql: str, params: list[Any] | None = None) -> list[tuple[object, ...]]:
    with read_cursor() as cursor:
        cursor.execute(sql, params or [])
        return [tuple(row) for row in cursor.fetchall()]


def test_reads_answer_their_own_query_one_after_another():
    assert _read("SELECT %s + 1", [1]) == [(2,)]
    assert _read("SELECT %s || 'b'", ["a"]) == [("ab",)]
    assert _read("SELECT 1 WHERE 1 = 0") == []


def test_a_read_inside_another_leaves_the_outer_result_whole():
    with read_cursor() as outer:
        outer.execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
        first = outer.fetchone()
        assert _read("SELECT 42") == [(42,)]
        rest = outer.fetchall()
    assert [first, *rest] == [(1,), (2,), (3,)]
    assert _read("SELECT 7") == [(7,)]


def test_a_failed_read_does_not_spoil_the_next_one():
    with pytest.raises(DatabaseError), transaction.atomic():
        _read("SELECT * FROM no_such_table")
    assert _read("SELECT 'after'") == [("after",)]


@pytest.mark.django_db(transaction=True)
def test_a_read_after_the_connection_was_closed_opens_a_new_one():
    assert _read("SELECT 1") == [(1,)]
    connection.close()
    assert _read("SELECT 2") == [(2,)]


@pytest.mark.postgres
def test_timestamps_come_back_aware_in_utc(requires_postgres):
    at = datetime(2026, 12, 3, 21, 35, 38, 123456, tzinfo=UTC)
    ((value,),) = _read("SELECT %s::timestamptz", [at])
    assert value == at and value.utcoffset() is not None and value.utcoffset().total_seconds() == 0


def test_django_sees_every_read():
    with CaptureQueriesContext(connection) as queries:
        _read("SELECT 1")
        _read("SELECT 2")
    assert [q["sql"] for q in queries.captured_queries] == ["SELECT 1", "SELECT 2"]
