"""Poller ingestion benchmark: N connections x M mock messages through `poll_run`, on PostgreSQL.

    .venv/bin/python benchmarks/poll_ingest.py [--connections 1000] [--messages 20]

Uses its own database (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/keybuzz_bench,
created and migrated if missing, emptied before each run). Prints messages/second, queries per
connection, peak memory early and late in the run (flat memory means they match), and the rate of
a plain psycopg bulk insert of the same rows (ExternalMessage + Ticket + TicketMessage) for
comparison. Target: 20,000 messages in under 10 s, at least half the plain-insert rate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):  # peak resident set size
                return int(line.split()[1]) / 1024
    return 0.0


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="mock messages per connection")
    parser.add_argument("--workers", type=int, help="poller threads (default: AMAZON_POLL_WORKERS, 4)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/keybuzz_bench")
    ensure_database(url)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "keybuzz.settings", "KEYBUZZ_ENV_FILE": "none", "DEBUG": "false",
        "DJANGO_SECRET_KEY": "benchmark-" + "x" * 50, "JWT_SECRET": "benchmark-jwt-secret-0123456789",
        "SECRETS_BACKEND": "local", "SECRETS_LOCAL_KEY": "0" * 43 + "=", "DATABASE_URL": url,
        "AMAZON_USE_MOCK": "true", "AMAZON_MOCK_MESSAGES_PER_POLL": str(args.messages), "LOG_LEVEL": "WARNING",
        "AMAZON_SPAPI_APP_SOURCE": "external_test",
    })
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.utils import timezone

    from keybuzz.models import Tenant
    from marketplaces.models import ConnectionStatus, MarketplaceConnection
    from marketplaces.poller import poll_run

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE keybuzz_tenant CASCADE")
    tenants = Tenant.objects.bulk_create([Tenant(slug=f"bench-{i}", name=f"Bench {i}")
                                          for i in range(max(args.connections // 10, 1))])
    MarketplaceConnection.objects.bulk_create([
        MarketplaceConnection(tenant=tenants[i % len(tenants)], selling_partner_id=f"BENCH{i:06d}",
                              status=ConnectionStatus.CONNECTED, app_source="external_test", region="EU",
                              connected_at=timezone.now())
        for i in range(args.connections)
    ])
    connection.close()  # the next query opens a new connection, which gets the counter below

    queries = itertools.count()

    def count(execute, sql, params, many, context):
        next(queries)
        return execute(sql, params, many, context)

    # The poller's worker threads open their own database connections: count on each of them.
    connection_created.connect(lambda connection, **_: connection.execute_wrappers.append(count), weak=False)

    polled = 0
    rss_early = 0.0

    def progress() -> bool:
        nonlocal polled, rss_early
        polled += 1
        if polled == max(args.connections // 10, 1):
            rss_early = rss_mib()
        return False

    started = time.perf_counter()
    summary = poll_run(should_stop=progress, workers=args.workers)
    elapsed = time.perf_counter() - started
    queries = next(queries)
    workers = args.workers or settings.AMAZON_POLL_WORKERS
    rss_late = rss_mib()
    total = summary.new_messages
    if summary.failures or total != args.connections * args.messages:
        sys.exit(f"benchmark run failed: {summary.failures} connections failed, {total} new messages (see the log)")

    plain_rate = plain_insert_rate(url, args.connections, args.messages)
    rate = total / elapsed
    result = {
        "connections": args.connections, "messages": total, "seconds": round(elapsed, 2),
        "workers": workers,
        "messages_per_second": round(rate), "queries_per_connection": round(queries / args.connections, 1),
        "peak_rss_mib_at_10pct": round(rss_early, 1), "peak_rss_mib_at_end": round(rss_late, 1),
        "plain_insert_messages_per_second": round(plain_rate), "ratio_to_plain_insert": round(rate / plain_rate, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"poll_run ({workers} workers): {total:,} messages from {args.connections:,} "
          f"connections in {elapsed:.2f} s = {rate:,.0f} messages/s")
    print(f"queries per connection: {result['queries_per_connection']}")
    print(f"peak RSS: {rss_early:.1f} MiB after 10% of the connections, {rss_late:.1f} MiB at the end")
    print(f"plain psycopg bulk insert of the same rows: {plain_rate:,.0f} messages/s; "
          f"poller / plain = {rate / plain_rate:.2f}")


def plain_insert_rate(url: str, connections: int, per_connection: int) -> float:
    """The same rows inserted with psycopg's executemany into scratch copies of the three tables
    (same columns and indexes, WAL-logged like the real ones), one transaction per connection:
    what the database costs without any of the poller's logic."""
    import psycopg
    from psycopg.types.json import Jsonb

    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        tables = ("marketplaces_externalmessage", "tickets_ticket", "tickets_ticketmessage")
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS bench_{table}")
            conn.execute(f"CREATE TABLE bench_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
        conn.commit()
        tenant = conn.execute("SELECT id FROM keybuzz_tenant LIMIT 1").fetchone()[0]
        conn_id = conn.execute("SELECT id FROM marketplaces_marketplaceconnection LIMIT 1").fetchone()[0]
        started = time.perf_counter()
        with conn.cursor() as cur:
            next_id = 1
            for c in range(connections):
                rows = range(next_id, next_id + per_connection)
                next_id += per_connection
                cur.executemany(
                    "INSERT INTO bench_marketplaces_externalmessage (id, tenant_id, connection_id, type, external_id,"
                    " thread_key, order_id, sender, subject, body, sent_at, raw, created_at)"
                    " VALUES (%s, %s, %s, 'AMAZON', %s, %s, '402-1', 'b@x', 'subject', 'body', %s, %s, %s)",
                    [(i, tenant, conn_id, f"m-{c}-{i}", f"t-{c}-{i}", now, Jsonb({"i": i}), now) for i in rows])
                cur.executemany(
                    "INSERT INTO bench_tickets_ticket (id, tenant_id, channel, connection_id, thread_key, subject,"
                    " customer_name, customer_ref, order_id, status, last_message_at, response_due_at, created_at,"
                    " updated_at) VALUES (%s, %s, 'AMAZON', %s, %s, 's', 'n', 'r', 'o', 'OPEN', %s, %s, %s, %s)",
                    [(i, tenant, conn_id, f"t-{c}-{i}", now, now, now, now) for i in rows])
                cur.executemany(
                    "INSERT INTO bench_tickets_ticketmessage (id, tenant_id, ticket_id, direction, author_name, body,"
                    " external_message_id, delivery_status, delivery_error, delivery_attempts, delivery_ref,"
                    " sent_at, created_at) VALUES (%s, %s, %s, 'INBOUND', 'n', 'body', %s, '', '', 0, '', %s, %s)",
                    [(i, tenant, i, i, now, now) for i in rows])
                conn.commit()  # one transaction per connection, as the poller does
        elapsed = time.perf_counter() - started
        for table in tables:
            conn.execute(f"DROP TABLE bench_{table}")
    return connections * per_connection / elapsed


if __name__ == "__main__":
    main()
