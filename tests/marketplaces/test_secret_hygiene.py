"""The refresh token (and the app's client secret, and the one-time code) appear in no log record,
no API response and no database column: each is searched for after a full connect/disconnect."""

from __future__ import annotations

import logging

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplaces.models import MarketplaceConnection
from tests.marketplaces.conftest import (
    AMAZON_OAUTH,
    CLIENT_SECRET,
    DISCONNECT_URL,
    REFRESH_TOKEN,
    START_URL,
    STATUS_URL,
    callback,
    lwa_error,
    lwa_ok,
    start_flow,
)

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]
CODE = "ANsecretOneTimeCode987654321"
SECRETS = (REFRESH_TOKEN, CLIENT_SECRET, CODE)


def every_database_value() -> str:
    """Every row of every table, as text."""
    dump: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")  # table names come from introspection
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def log_text(caplog) -> str:
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''} {getattr(r, 'stack_info', '') or ''}"
        for r in caplog.records
    )


def assert_nowhere(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret found in {where}"


def test_tokens_are_nowhere_but_the_secret_store(owner_client, fake_lwa, caplog):
    caplog.set_level(logging.DEBUG)
    lwa_ok(fake_lwa)
    answers = []
    with CaptureQueriesContext(db) as queries:
        answers.append(owner_client.post(START_URL, {"marketplace": "FR"}, format="json"))
        state = start_flow(owner_client)
        answers.append(callback(APIClient(), state=state, code=CODE))
        answers.append(owner_client.get(STATUS_URL))
        answers.append(owner_client.post(DISCONNECT_URL, {}, format="json"))
        answers.append(owner_client.get(STATUS_URL))
    assert answers[1].status_code == 200
    assert MarketplaceConnection.objects.get().status == "DISCONNECTED"

    for answer in answers:
        assert_nowhere(answer.content.decode() + repr(sorted(answer.items())), f"response {answer.request}")
    assert_nowhere(log_text(caplog), "logs")
    assert_nowhere("\n".join(q["sql"] for q in queries.captured_queries), "SQL")
    assert_nowhere(every_database_value(), "database")


def test_failures_leak_nothing_either(owner_client, fake_lwa, caplog):
    caplog.set_level(logging.DEBUG)
    lwa_error(fake_lwa, error="invalid_grant", description=f"Invalid code {CODE} for client_secret={CLIENT_SECRET}")
    answer = callback(APIClient(), state=start_flow(owner_client), code=CODE, HTTP_ACCEPT="application/json")
    assert answer.status_code == 400
    assert "invalid_grant" in answer.json()["message"]
    assert_nowhere(answer.content.decode(), "response")
    assert_nowhere(log_text(caplog), "logs")
    assert_nowhere(every_database_value(), "database")
    assert "amazon oauth error" in caplog.text.lower()
