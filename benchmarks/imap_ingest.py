"""IMAP ingestion benchmark: N relay mailboxes x M mails on a local Dovecot through `poll_run`, against
the mock source over the same connections, in the same run, on PostgreSQL.

    .venv/bin/python benchmarks/imap_ingest.py [--mailboxes 100] [--mails 20] [--workers 4] [--rounds 2] [--json]

Uses its own database (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/keybuzz_bench,
created and migrated if missing, emptied before the run), a real Dovecot 2.3 on 127.0.0.1 from the
tests' helper (tests/mail_servers/dovecot.py) and a local secret store and MEDIA_ROOT in a temporary
directory; all are removed at the end.

Each connection (one tenant each) gets its own Dovecot user, filled with M buyer messages of the
relay-mail corpus (tests/fixtures/relay_mail, `kind == "buyer_message"`, cycled), each made unique:
a new Message-ID and a relay address of its own (so M threads per mailbox). The same connections are
then polled by the mock source (no Mailbox rows, AMAZON_MOCK_MESSAGES_PER_POLL = M) and over IMAP
(their Mailbox rows, saved once through `mailbox_settings_save`), alternately (mock, imap, mock,
imap… `--rounds` times), with the filed rows, cursors and stored attachments reset before each pass,
so a machine whose speed drifts weighs on both sides alike. A pass is `poll_run(force=True)`
repeated until a run fetches nothing (that last, empty run is not timed). Prints messages/s of the
best pass of each source, their ratio, the median CPU time of this process per pass of each source
(over the same timed runs; the parsing processes and the servers are not counted) and the peak RSS of this process (VmHWM: Dovecot's processes
are not counted) before the IMAP passes, after about half of the first one and at the end (flat
memory means they match). Exits non-zero when a pass does not file exactly N x M messages in N x M
tickets without failures. Target on a 2-core machine: IMAP at least 0.25 of the mock, memory flat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import ensure_database, product_env, rss_mib  # noqa: E402  (needs ROOT on the path)

CORPUS = ROOT / "tests" / "fixtures" / "relay_mail"
TARGET_RATIO = 0.25
FLAT_TOLERANCE = 0.10  # peak RSS may grow this much from half-way to the end and still be "flat"
# What a pass files, and what the reset before each pass empties (CASCADE: ticket messages, attachments).
FILED_TABLES = (
    "marketplaces_externalmessage",
    "marketplaces_mailboxactivity",
    "marketplaces_quarantinedmessage",
    "tickets_ticket",
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


# -- the mails ------------------------------------------------------------------------------------


def buyer_templates() -> list[tuple[str, bytes, bytes]]:
    """(file name, raw mail, relay local part) of every buyer message of the corpus."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    templates = []
    for name, entry in sorted(manifest.items()):
        if entry["kind"] != "buyer_message":
            continue
        local = entry["thread_relay"].rpartition("@")[0].encode()
        templates.append((name, (CORPUS / name).read_bytes(), local))
    return templates


def unique_mail(raw: bytes, relay_local: bytes, tag: str) -> bytes:
    """The mail with a Message-ID of its own (`<tag@bench.keybuzz.example>`, added when it had none) and
    its relay address's local part suffixed with `tag` in the headers (a new buyer, so a new thread).
    The body is left alone: it may be base64 or quoted-printable."""
    found = _HEADER_END.search(raw)
    head, rest = (raw[: found.start()], raw[found.start() :]) if found else (raw, b"")
    eol = b"\r\n" if b"\r\n" in head else b"\n"
    kept: list[bytes] = []
    dropping = False
    for line in head.split(eol):
        if dropping and line[:1] in (b" ", b"\t"):  # a folded Message-ID continues
            continue
        dropping = line.lower().startswith(b"message-id:")
        if not dropping:
            kept.append(line)
    kept.append(b"Message-ID: <" + tag.encode() + b"@bench.keybuzz.example>")
    head = re.sub(rb"(?<![\w.+-])" + re.escape(relay_local) + rb"(?=[@+])", relay_local + tag.encode(), eol.join(kept))
    return head + rest


def mailbox_mails(templates: list[tuple[str, bytes, bytes]], box: int, count: int) -> Iterator[bytes]:
    """Mailbox `box`'s mails: the corpus cycled across mailboxes, so every template is used."""
    for n in range(count):
        _, raw, local = templates[(box * count + n) % len(templates)]
        yield unique_mail(raw, local, f"b{box:05d}m{n:05d}")


def check_templates(templates: list[tuple[str, bytes, bytes]]) -> None:
    """Every rewritten template still reads as a buyer message, with the new Message-ID and relay."""
    from marketplaces.mailbox.relay import parse_relay_mail

    for name, raw, local in templates:
        mail = parse_relay_mail(unique_mail(raw, local, "check"))
        expected_relay = local.decode() + "check@"
        if (mail.kind, mail.message_id) != ("buyer_message", "check@bench.keybuzz.example") or not (
            mail.thread_relay.startswith(expected_relay)
        ):
            sys.exit(
                f"benchmark setup failed: {name} rewritten reads as {mail.kind}, Message-ID {mail.message_id!r}, "
                f"relay {mail.thread_relay!r} (expected a buyer message from {expected_relay}…)"
            )


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=100, help="connections, each with its own mailbox")
    parser.add_argument("--mails", type=int, default=20, help="relay mails per mailbox (mock messages per poll)")
    parser.add_argument("--workers", type=int, help="poller threads (default: AMAZON_POLL_WORKERS, 48)")
    parser.add_argument("--rounds", type=int, default=2, help="mock then IMAP passes, alternated (default 2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.mailboxes < 1 or args.mails < 1 or args.rounds < 1:
        parser.error("--mailboxes, --mails and --rounds must be at least 1")

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/keybuzz_bench")
    ensure_database(url)
    workdir = Path(tempfile.mkdtemp(prefix="keybuzz-imap-bench-"))
    os.environ.update(product_env(database_url=url, secrets_path=str(workdir / "secrets" / "secrets.json")))
    os.environ.update(
        {
            "MEDIA_ROOT": str(workdir / "media"),
            "AMAZON_MESSAGE_SOURCE": "",
            "AMAZON_MOCK_MESSAGES_PER_POLL": str(args.mails),
            "AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS": "true",  # Dovecot listens on 127.0.0.1
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from tests.mail_servers.dovecot import Dovecot, start_dovecot

    server: Dovecot | None = None
    try:
        server = start_dovecot(workdir / "dovecot")
        result = Bench(args, server, workdir).run()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(result, args.json)


class HalfWay:
    """A `should_stop` that never stops, and notes the peak RSS at its `at`-th call: poll_run calls it
    once per connection polled (and once per claim), so at about that many connections."""

    def __init__(self, at: int) -> None:
        self.at = max(at, 1)
        self.calls = 0
        self.rss = 0.0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == self.at:
            self.rss = rss_mib()
        return False


class Bench:
    def __init__(self, args: argparse.Namespace, server: Any, workdir: Path) -> None:
        self.args = args
        self.server = server
        self.media = workdir / "media"
        self.expected = args.mailboxes * args.mails
        self.saved_mailboxes: list[Any] = []

    def say(self, text: str) -> None:
        if not self.args.json:
            print(text, flush=True)

    def run(self) -> dict[str, Any]:
        from django.conf import settings

        self.setup()
        workers = self.args.workers or settings.AMAZON_POLL_WORKERS
        rss_before_imap = 0.0
        rss_half = 0.0
        passes: dict[str, list[dict[str, Any]]] = {"mock": [], "imap": []}
        for round_no in range(1, self.args.rounds + 1):
            for source in ("mock", "imap"):
                probe = HalfWay(self.args.mailboxes // 2) if source == "imap" and round_no == 1 else None
                if probe is not None:
                    rss_before_imap = rss_mib()
                figures = self.one_pass(source, probe or (lambda: False))
                if probe is not None:
                    rss_half = probe.rss
                passes[source].append(figures)
                self.say(
                    f"round {round_no} {source}: {figures['messages']:,} messages in {figures['seconds']:.2f} s "
                    f"= {figures['messages_per_second']:,.0f} msg/s ({figures['runs']} poll run(s), "
                    f"{figures['cpu_seconds']:.2f} s of the poller's CPU)"
                )
        rss_end = rss_mib()
        self.check_filed()

        best = {source: max(runs, key=lambda f: f["messages_per_second"]) for source, runs in passes.items()}
        ratio = best["imap"]["messages_per_second"] / best["mock"]["messages_per_second"]
        growth = rss_end - rss_half
        return {
            "mailboxes": self.args.mailboxes,
            "mails_per_mailbox": self.args.mails,
            "messages": self.expected,
            "workers": workers,
            "rounds": self.args.rounds,
            "mock": best["mock"],
            "imap": best["imap"],
            "mock_passes": passes["mock"],
            "imap_passes": passes["imap"],
            "mock_median_messages_per_second": round(
                statistics.median(f["messages_per_second"] for f in passes["mock"])
            ),
            "imap_median_messages_per_second": round(
                statistics.median(f["messages_per_second"] for f in passes["imap"])
            ),
            "mock_median_cpu_seconds": round(statistics.median(f["cpu_seconds"] for f in passes["mock"]), 3),
            "imap_median_cpu_seconds": round(statistics.median(f["cpu_seconds"] for f in passes["imap"]), 3),
            "ratio_imap_to_mock": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "target_met": ratio >= TARGET_RATIO,
            "peak_rss_mib_before_imap": round(rss_before_imap, 1),
            "peak_rss_mib_half_first_imap": round(rss_half, 1),
            "peak_rss_mib_at_end": round(rss_end, 1),
            "rss_flat": growth <= FLAT_TOLERANCE * rss_half,
        }

    # -- setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from keybuzz.models import Tenant
        from marketplaces.models import ConnectionStatus, Mailbox, MarketplaceConnection
        from marketplaces.services.mailbox import mailbox_settings_save

        started = time.perf_counter()
        templates = buyer_templates()
        check_templates(templates)
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE keybuzz_tenant, marketplaces_pollrun CASCADE")
        n = self.args.mailboxes
        tenants = Tenant.objects.bulk_create([Tenant(slug=f"imap-bench-{i}", name=f"IMAP bench {i}") for i in range(n)])
        connections = MarketplaceConnection.objects.bulk_create(
            [
                MarketplaceConnection(
                    tenant=tenant,
                    selling_partner_id=f"IMAPBENCH{i:06d}",
                    status=ConnectionStatus.CONNECTED,
                    app_source=settings.AMAZON_SPAPI_APP_SOURCE,
                    region="EU",
                    marketplace_ids=["A13V1IB3VIYZZH"],
                    secret_ref=f"keybuzz/tenants/{tenant.id}/amazon/IMAPBENCH{i:06d}",
                    connected_at=timezone.now(),
                )
                for i, tenant in enumerate(tenants)
            ]
        )
        for box, (tenant, conn) in enumerate(zip(tenants, connections, strict=True)):
            user = self.server.add_user(f"seller-{box:05d}")
            self.server.bulk_append(user.username, mailbox_mails(templates, box, self.args.mails))
            saved = mailbox_settings_save(
                tenant=tenant,
                connection_id=conn.id,
                host=self.server.host,
                port=self.server.port,
                security="none",
                username=user.username,
                password=user.password,
                folder="INBOX",
            )
            if not saved.check.ok:
                sys.exit(f"benchmark setup failed: mailbox {user.username}: {saved.check.code} {saved.check.message}")
        # Kept to be put back before each IMAP pass; removed for the mock passes (the passwords stay stored).
        self.saved_mailboxes = list(Mailbox.objects.all())
        self.say(
            f"setup: {n:,} Dovecot mailboxes x {self.args.mails:,} relay mails ({len(templates)} buyer messages "
            f"of the corpus, each made unique) in {time.perf_counter() - started:.1f} s"
        )

    def reset(self, source: str) -> None:
        """No filed rows, every connection never polled, and a mailbox only for the IMAP pass."""
        from datetime import timedelta

        from django.db import connection
        from django.utils import timezone

        from marketplaces.models import Mailbox, MarketplaceConnection

        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(FILED_TABLES)} CASCADE")
        Mailbox.objects.all().delete()
        if source == "imap":
            Mailbox.objects.bulk_create(self.saved_mailboxes)
        MarketplaceConnection.objects.update(
            poll_cursor="",
            last_polled_at=None,
            next_poll_at=None,
            lease_owner="",
            lease_expires_at=None,
            last_error="",
            last_error_at=None,
            consecutive_failures=0,
            updated_at=timezone.now() - timedelta(hours=1),
        )
        shutil.rmtree(self.media, ignore_errors=True)  # stored attachments: each pass writes its own
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")  # the last pass's dirty pages are not this pass's to write
        connection.close()

    # -- one pass ---------------------------------------------------------------------------------

    def one_pass(self, source: str, should_stop: Callable[[], bool]) -> dict[str, Any]:
        from marketplaces.polling import poll_run

        self.reset(source)
        totals = dict.fromkeys(
            ("fetched", "new_messages", "new_tickets", "quarantined", "recorded", "ignored", "skipped_old", "failures"),
            0,
        )
        seconds = cpu_seconds = 0.0
        runs = 0
        while True:
            started, cpu_started = time.perf_counter(), time.process_time()
            summary = poll_run(force=True, workers=self.args.workers, should_stop=should_stop)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            if summary.fetched == 0 and summary.failures == 0:
                break  # nothing new: the pass is over (this run only confirms it, untimed)
            runs += 1
            seconds += elapsed
            cpu_seconds += cpu
            for key in totals:
                totals[key] += getattr(summary, key)
            if summary.failures or runs > self.args.mails + 1:
                break
        figures = {
            "source": source,
            "messages": totals["new_messages"],
            "seconds": round(seconds, 3),
            # This process's CPU (all its threads, user and system) over the same runs: the poller's
            # threads share one interpreter lock, so this is what bounds a pass on a small machine.
            # The mail parsing processes and the servers are not counted.
            "cpu_seconds": round(cpu_seconds, 3),
            "messages_per_second": round(totals["new_messages"] / seconds) if seconds else 0,
            "runs": runs,
            **totals,
        }
        problems = [
            f"{totals['new_messages']} new messages (expected {self.expected})"
            if totals["new_messages"] != self.expected
            else "",
            f"{totals['new_tickets']} new tickets (expected {self.expected})"
            if totals["new_tickets"] != self.expected
            else "",
            f"{totals['failures']} failed connections" if totals["failures"] else "",
            f"{totals['quarantined']} quarantined" if totals["quarantined"] else "",
            f"{totals['recorded'] + totals['ignored']} mails not read as buyer messages"
            if totals["recorded"] + totals["ignored"]
            else "",
            f"{totals['skipped_old']} mails skipped as old" if totals["skipped_old"] else "",
        ]
        problems = [p for p in problems if p]
        if problems:
            sys.exit(f"benchmark {source} pass failed: {'; '.join(problems)} (see the log)")
        return figures

    def check_filed(self) -> None:
        """After the last IMAP pass: the rows are really there, and every cursor is at the last UID."""
        from marketplaces.models import ExternalMessage, MarketplaceConnection
        from marketplaces.sources.imap import ImapCursor
        from tickets.models import Ticket, TicketMessage

        counts = (ExternalMessage.objects.count(), TicketMessage.objects.count(), Ticket.objects.count())
        if counts != (self.expected,) * 3:
            sys.exit(
                f"benchmark check failed: (messages, ticket messages, tickets) = {counts}, expected {self.expected}"
            )
        behind = [
            cursor
            for cursor in MarketplaceConnection.objects.values_list("poll_cursor", flat=True)
            if ImapCursor.parse(cursor).last_uid != self.args.mails
        ]
        if behind:
            sys.exit(f"benchmark check failed: {len(behind)} cursors not at UID {self.args.mails}, e.g. {behind[0]!r}")


def report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    rounds = result["rounds"]
    for source in ("mock", "imap"):
        best = result[source]
        print(
            f"{source}: {best['messages']:,} messages in {best['seconds']:.2f} s = {best['messages_per_second']:,} msg/s "
            f"(best of {rounds}; median {result[f'{source}_median_messages_per_second']:,} msg/s; "
            f"{result['workers']} workers)"
        )
    print(
        f"poller CPU per pass (median, this process only): mock {result['mock_median_cpu_seconds']:.2f} s, "
        f"IMAP {result['imap_median_cpu_seconds']:.2f} s"
    )
    print(
        f"ratio imap/mock: {result['ratio_imap_to_mock']:.2f} "
        f"(target >= {TARGET_RATIO}: {'met' if result['target_met'] else 'NOT met'})"
    )
    half, end = result["peak_rss_mib_half_first_imap"], result["peak_rss_mib_at_end"]
    print(
        f"peak RSS: {end:.1f} MiB at the end (before the IMAP passes: {result['peak_rss_mib_before_imap']:.1f} MiB, "
        f"after about half of the first: {half:.1f} MiB; {'flat' if result['rss_flat'] else 'NOT flat'}, "
        f"{end - half:+.1f} MiB)"
    )


if __name__ == "__main__":
    main()
