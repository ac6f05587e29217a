"""An existing database, made by the migrations as they were before the layers were made one-way
(tests/legacy_migrations), upgrades with every link intact, and ends with the same tables as a
new database. Real processes (`manage.py migrate`), on the suite's database engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def database_url(tmp_path):
    """A new, empty database of the suite's engine for each use, dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        if connection.vendor == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite3'}"
        name = f"kb_upgrade_{uuid.uuid4().hex[:10]}"
        with server() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{server_url}/{name}"

    settings = connection.settings_dict
    server_url = f"postgresql://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"

    def server():  # CREATE/DROP DATABASE cannot run in a transaction: a connection of its own
        import psycopg

        return psycopg.connect(f"{server_url}/postgres", autocommit=True)

    yield make
    for name in made:
        with server() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, *args: str, settings: str = "keybuzz.settings") -> str:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": settings, "KEYBUZZ_ENV_FILE": "none"}
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_an_existing_database_upgrades_with_every_link_intact(database_url):
    old = database_url()
    run(old, "manage.py", "migrate", "--no-input", "-v0", settings="tests.legacy_settings")
    seeded = json.loads(run(old, "-m", "tests.migration_upgrade", "seed", settings="tests.legacy_settings"))

    out = run(old, "manage.py", "migrate", "--no-input")
    assert "tickets.0002_drop_channel_foreign_keys... OK" in out

    after = json.loads(run(old, "-m", "tests.migration_upgrade", "links"))
    assert after["tickets"] == seeded["tickets"]  # every ticket keeps its connection
    assert after["messages"] == seeded["messages"]  # every buyer message keeps its stored copy
    assert after["connections"] == sorted(seeded["connections"])
    for message_id, external_id in seeded["messages"].items():
        if external_id is not None:  # and the stored copy still finds its ticket
            assert after["filed_in"][str(external_id)] == after["ticket_of_message"][message_id]
    assert "No migrations to apply." in run(old, "manage.py", "migrate", "--no-input")

    fresh = database_url()
    run(fresh, "manage.py", "migrate", "--no-input", "-v0")
    upgraded = json.loads(run(old, "-m", "tests.migration_upgrade", "schema"))
    new = json.loads(run(fresh, "-m", "tests.migration_upgrade", "schema"))
    assert upgraded == new
    foreign_keys = {
        (table, tuple(c["columns"]), c["foreign_key"][0])
        for table, described in upgraded.items()
        for c in described["constraints"].values()
        if c["foreign_key"]
    }
    assert not [fk for fk in foreign_keys if fk[0].startswith("tickets_") and fk[2].startswith("marketplaces_")]


@pytest.mark.postgres
def test_the_list_indexes_are_swapped_even_after_an_interrupted_run(requires_postgres, database_url):
    """tickets 0013 builds the list's covering indexes CONCURRENTLY under a temporary name, outside a
    transaction: a run stopped half-way leaves such an index behind, and running the migration again
    must still end with the three indexes, and nothing else left over. Back to 0012, the old ones."""
    import psycopg

    url = database_url()
    run(url, "manage.py", "migrate", "tickets", "0012", "--no-input", "-v0")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE INDEX "ticket_tenant_due_building" ON "tickets_ticket" ("id")')  # the leftover

    def indexes() -> dict[str, str]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tickets_ticket'"
                " AND (indexname LIKE '%building' OR indexname IN"
                " ('ticket_tenant_last_msg', 'ticket_unanswered_last_msg', 'ticket_tenant_due'))"
            ).fetchall()
        return dict(rows)

    run(url, "manage.py", "migrate", "--no-input", "-v0")
    after = indexes()
    assert sorted(after) == ["ticket_tenant_due", "ticket_tenant_last_msg", "ticket_unanswered_last_msg"]
    assert "(tenant_id, response_due_at, id) INCLUDE (status, channel, assignee_id" in after["ticket_tenant_due"]
    assert "(tenant_id, last_message_at DESC NULLS LAST, id DESC) INCLUDE (status" in after["ticket_tenant_last_msg"]
    assert "INCLUDE (status" in after["ticket_unanswered_last_msg"] and "WHERE" in after["ticket_unanswered_last_msg"]

    run(url, "manage.py", "migrate", "tickets", "0012", "--no-input", "-v0")
    before = indexes()
    assert sorted(before) == sorted(after)
    assert not [definition for definition in before.values() if "INCLUDE" in definition]
    assert "(tenant_id, last_message_at DESC NULLS LAST, id DESC)" in before["ticket_tenant_last_msg"]


def test_existing_tickets_get_their_message_figures(database_url):
    """tickets 0015 adds the list's message figures as columns (kept by triggers from then on);
    0016 (PostgreSQL, in batches) or 0015 itself (SQLite) counts them for the tickets already there.
    Back to 0014 and forward again gives the same."""
    url = database_url()
    run(url, "manage.py", "migrate", "tickets", "0014", "--no-input", "-v0")
    expected = json.loads(run(url, "-m", "tests.migration_upgrade", "figures_seed"))
    run(url, "manage.py", "migrate", "--no-input", "-v0")
    assert json.loads(run(url, "-m", "tests.migration_upgrade", "figures")) == expected
    run(url, "manage.py", "migrate", "tickets", "0014", "--no-input", "-v0")
    run(url, "manage.py", "migrate", "--no-input", "-v0")
    assert json.loads(run(url, "-m", "tests.migration_upgrade", "figures")) == expected
