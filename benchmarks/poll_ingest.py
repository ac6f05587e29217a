"""Poller ingestion benchmark: N connections x M mock messages through `poll_run`, on PostgreSQL.

    .venv/bin/python benchmarks/poll_ingest.py [--connections 1000] [--messages 20] [--workers 4] [--json]

Uses its own database (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/keybuzz_bench,
created and migrated if missing, emptied before each run). Prints messages/second, queries per
connection and peak memory early and late in the run (flat memory means they match).

For comparison it also times a plain psycopg bulk insert of the same rows (ExternalMessage, Ticket
and TicketMessage, the same sizes of payload), one transaction per connection and with the
poller's commit setting, in two forms: into the product's own tables (their indexes and foreign
keys, the work any correct ingestion must do), and into scratch copies that have the indexes but
no foreign keys (the database's floor). Half of each runs before the poller and half after, so a
machine whose speed drifts during the run (shared virtual machines do) weighs on both sides alike.
Target: 20,000 messages in under 10 s, at least half the plain-insert rate.
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

from benchmarks.measure import ensure_database, product_env, rss_mib  # noqa: E402  (needs ROOT on the path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="mock messages per connection")
    parser.add_argument("--workers", type=int, help="poller threads (default: AMAZON_POLL_WORKERS, 48)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/keybuzz_bench")
    ensure_database(url)
    os.environ.update(product_env(database_url=url))
    os.environ.update(
        {
            "AMAZON_MOCK_MESSAGES_PER_POLL": str(args.messages),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.utils import timezone

    from keybuzz.models import Tenant
    from marketplaces.models import ConnectionStatus, MarketplaceConnection
    from marketplaces.polling import poll_run

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE keybuzz_tenant CASCADE")
    tenants = Tenant.objects.bulk_create(
        [Tenant(slug=f"bench-{i}", name=f"Bench {i}") for i in range(max(args.connections // 10, 1))]
    )
    MarketplaceConnection.objects.bulk_create(
        [
            MarketplaceConnection(
                tenant=tenants[i % len(tenants)],
                selling_partner_id=f"BENCH{i:06d}",
                status=ConnectionStatus.CONNECTED,
                app_source="external_test",
                region="EU",
                connected_at=timezone.now(),
            )
            for i in range(args.connections)
        ]
    )
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

    tables = PlainInsert(url, args.messages, copies=False)
    copies = PlainInsert(url, args.messages, copies=True)
    first_half = args.connections // 2
    copies.run(first_half)
    tables.run(first_half)

    started = time.perf_counter()
    summary = poll_run(should_stop=progress, workers=args.workers)
    elapsed = time.perf_counter() - started
    query_count = next(queries)
    workers = args.workers or settings.AMAZON_POLL_WORKERS
    rss_late = rss_mib()
    total = summary.new_messages
    if summary.failures or total != args.connections * args.messages:
        sys.exit(f"benchmark run failed: {summary.failures} connections failed, {total} new messages (see the log)")

    tables.run(args.connections - first_half)
    copies.run(args.connections - first_half)
    tables.close()
    copies.close()
    rate = total / elapsed
    result = {
        "connections": args.connections,
        "messages": total,
        "seconds": round(elapsed, 2),
        "workers": workers,
        "messages_per_second": round(rate),
        "queries_per_connection": round(query_count / args.connections, 1),
        "peak_rss_mib_at_10pct": round(rss_early, 1),
        "peak_rss_mib_at_end": round(rss_late, 1),
        "plain_insert_messages_per_second": round(tables.rate()),
        "ratio_to_plain_insert": round(rate / tables.rate(), 2),
        "plain_insert_without_foreign_keys_messages_per_second": round(copies.rate()),
        "ratio_to_plain_insert_without_foreign_keys": round(rate / copies.rate(), 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"poll_run ({workers} workers): {total:,} messages from {args.connections:,} "
        f"connections in {elapsed:.2f} s = {rate:,.0f} messages/s"
    )
    print(f"queries per connection: {result['queries_per_connection']}")
    print(f"peak RSS: {rss_early:.1f} MiB after 10% of the connections, {rss_late:.1f} MiB at the end")
    print(
        f"plain psycopg bulk insert of the same rows into the same tables: {tables.rate():,.0f} messages/s; "
        f"poller / plain = {rate / tables.rate():.2f}"
    )
    print(
        f"  into copies without foreign keys: {copies.rate():,.0f} messages/s; "
        f"poller / plain = {rate / copies.rate():.2f}"
    )


PLAIN_TABLES = ("marketplaces_externalmessage", "tickets_ticket", "tickets_ticketmessage")
# Ids far above the poller's: the plain rows sit beside the poller's until they are deleted.
PLAIN_ID_BASE = 10**12


class PlainInsert:
    """The same rows as the poller's, inserted with psycopg's executemany and nothing else."""

    def __init__(self, url: str, per_connection: int, *, copies: bool) -> None:
        import psycopg

        self.per_connection = per_connection
        self.copies = copies
        self.conn = psycopg.connect(url)
        # As the poller does (see marketplaces.polling.run): the comparison is of the work, not of the disk.
        self.conn.execute("SET synchronous_commit TO OFF")
        self.tables = [f"bench_{t}" for t in PLAIN_TABLES] if copies else list(PLAIN_TABLES)
        if copies:
            for copy, table in zip(self.tables, PLAIN_TABLES, strict=True):
                self.conn.execute(f"DROP TABLE IF EXISTS {copy}")
                self.conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
        first = self.conn.execute(
            "SELECT tenant_id, id FROM marketplaces_marketplaceconnection ORDER BY id LIMIT 1"
        ).fetchone()
        assert first is not None, "the benchmark made no connection"
        self.tenant, self.connection = first
        self.conn.commit()
        self.next_id = PLAIN_ID_BASE
        self.seconds = 0.0
        self.rows = 0

    def run(self, connections: int) -> None:
        from psycopg.types.json import Jsonb

        from marketplaces.sources.base import ConnectionSnapshot
        from marketplaces.sources.mock import MockAmazonSource

        em, ticket, message = self.tables
        snapshot = ConnectionSnapshot(
            id=str(self.connection),
            tenant_id=str(self.tenant),
            selling_partner_id="PLAIN",
            region="EU",
            marketplace_ids=(),
            cursor="",
        )
        template = MockAmazonSource()._message(snapshot, 1, 0, datetime.now(UTC))
        started = time.perf_counter()
        with self.conn.cursor() as cur:
            for _ in range(connections):
                now = datetime.now(UTC)
                ids = range(self.next_id, self.next_id + self.per_connection)
                self.next_id += self.per_connection
                batch = [(i, dict(template, messageId=f"plain-{i}", threadId=f"plain-{i}")) for i in ids]
                cur.executemany(
                    f"INSERT INTO {em} (id, tenant_id, connection_id, type, external_id, thread_key, order_id,"
                    " sender, subject, body, sent_at, raw, created_at)"
                    " VALUES (%s, %s, %s, 'AMAZON', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            i,
                            self.tenant,
                            self.connection,
                            r["messageId"],
                            r["threadId"],
                            r["amazonOrderId"],
                            r["buyerEmail"],
                            r["subject"],
                            r["body"],
                            now,
                            Jsonb(r),
                            now,
                        )
                        for i, r in batch
                    ],
                )
                cur.executemany(
                    f"INSERT INTO {ticket} (id, tenant_id, channel, connection_id, thread_key, subject, customer_name,"
                    " customer_ref, order_id, status, last_message_at, last_inbound_at, response_due_at, created_at, updated_at)"
                    " VALUES (%s, %s, 'AMAZON', %s, %s, %s, %s, %s, %s, 'OPEN', %s, %s, %s, %s, %s)",
                    [
                        (
                            i,
                            self.tenant,
                            self.connection,
                            r["threadId"],
                            r["subject"],
                            r["buyerName"],
                            r["buyerEmail"],
                            r["amazonOrderId"],
                            now,
                            now,
                            now,
                            now,
                            now,
                        )
                        for i, r in batch
                    ],
                )
                cur.executemany(
                    f"INSERT INTO {message} (id, tenant_id, ticket_id, direction, author_name, body,"
                    " external_message_id, delivery_status, delivery_error, delivery_attempts, delivery_ref,"
                    " delivery_worker, origin, acknowledged_violations, channel_action, sent_at, created_at)"
                    " VALUES (%s, %s, %s, 'INBOUND', %s, %s, %s, '', '', 0, '', '', '', '[]', '', %s, %s)",
                    [(i, self.tenant, i, r["buyerName"], r["body"], i, now, now) for i, r in batch],
                )
                self.conn.commit()  # one transaction per connection, as the poller does
        self.seconds += time.perf_counter() - started
        self.rows += connections * self.per_connection

    def rate(self) -> float:
        return self.rows / self.seconds

    def close(self) -> None:
        if self.copies:
            for table in self.tables:
                self.conn.execute(f"DROP TABLE {table}")
        else:
            for table in reversed(self.tables):
                self.conn.execute(f"DELETE FROM {table} WHERE id >= %s", (PLAIN_ID_BASE,))
        self.conn.commit()
        self.conn.close()


if __name__ == "__main__":
    main()
