"""Poller scale benchmark: `poll_amazon --once` over 1k, 5k and 10k connections, as cron runs it.

    .venv/bin/python benchmarks/poll_scale.py [--sizes 1000,5000,10000] [--delays 0,0.1] [--quick]
        [--env NAME=VALUE ...] [--compare PATH [--compare-env NAME=VALUE ...]] [--json]

Uses its own database (BENCH_SCALE_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/keybuzz_bench_scale; created and migrated if missing). For each
fetch delay and each size it empties the tables (a fresh deployment: TRUNCATE also forgets the
planner's statistics), inserts N connected connections with two SQL statements, then runs the
poller twice, as a subprocess with the shipped AMAZON_POLL_* settings (--env overrides them):

- the first pass, over connections never polled (the mock's first batch: 3 new tickets each);
- the second pass, over the same connections (3 more messages each, one of them a follow-up).

The mock brings a new batch at every poll (AMAZON_MOCK_WINDOW_SECONDS=0) and a polled connection is
due again at once (AMAZON_POLL_INTERVAL_SECONDS=0): every pass does the same work, and a run must
rely on its own bookkeeping not to poll a connection twice, the worst case of a run longer than the
polling interval. A delay above 0 runs `SlowMockSource` below: the mock, waiting that long in every
fetch, as an IMAP or SP-API round trip does.

`--compare PATH` runs another checkout's poller (e.g. the code before a change, with its own
shipped settings and --compare-env) right after this one's, on the same freshly filled tables, so a
machine whose load drifts weighs on both alike. It needs this file in its benchmarks/ folder.

Printed per run: seconds (of the process, as cron sees it, and of the run itself, as its summary
says); milliseconds per connection (of the run: starting Python and Django takes about 2 s, which
would flatter the large sizes); the CPU per connection of the poller (less an empty run's) and of
its database backends (from /proc: PostgreSQL must run on this host), which other processes on the
machine disturb less than the clock; the poller's peak RSS (its own, from wait4); the most database
connections it held at once (pg_stat_activity, sampled every 20 ms). Then, per delay and pass, the
ratio of the largest size's time (and CPU) per connection to the smallest's, measured in the same
run: 1.00 is linear. Targets: ratio <= 1.3; 10,000 connections with a 100 ms fetch in <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import ensure_database, product_env  # noqa: E402  (needs ROOT on the path)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/keybuzz_bench_scale"
SIZES = (1000, 5000, 10000)
QUICK_SIZES = (500, 2000)
DELAYS = (0.0, 0.1)
MESSAGES_PER_POLL = 3
TARGET_RATIO = 1.3
TARGET_SECONDS_10K_SLOW = 60.0
BENCH_APP = "poll_scale"  # the benchmark's own database connections, not counted as the poller's


class SlowMockSource:
    """The mock source with a network round trip in every fetch (BENCH_FETCH_DELAY_SECONDS, default
    0.1 s): how long IMAP or SP-API keeps the poller waiting. Benchmark only; plugged in with
    AMAZON_MESSAGE_SOURCE=benchmarks.poll_scale.SlowMockSource, so the mock itself stays instant."""

    needs_access_token = False

    def __init__(self) -> None:
        from marketplaces.sources.mock import MockAmazonSource  # the poller's process has Django set up

        self._mock = MockAmazonSource()
        self._delay = float(os.environ.get("BENCH_FETCH_DELAY_SECONDS", "0.1"))

    def fetch(self, connection: Any, *, access_token: str | None) -> Any:
        time.sleep(self._delay)
        return self._mock.fetch(connection, access_token=access_token)

    def parse(self, raw: dict[str, Any]) -> Any:
        return self._mock.parse(raw)


@dataclass
class Pass:
    code: str  # "this" checkout, or "compared" (--compare)
    delay: float
    size: int
    name: str  # "first" or "second"
    seconds: float  # the process, start to exit, as cron sees it
    run_seconds: float  # the run itself (the summary's), without starting Python and Django
    polled: int
    new_messages: int
    failures: int
    peak_rss_mib: float
    db_connections: int
    cpu_seconds: float  # the poller's process (user + system), less what an empty run takes (Python, Django)
    db_cpu_seconds: float  # its database backends' (from /proc: PostgreSQL runs on this host)

    @property
    def ms_per_connection(self) -> float:
        """Of the run itself: the process's start (about 2 s here) would flatter the large sizes."""
        return 1000 * self.run_seconds / self.size

    @property
    def cpu_ms_per_connection(self) -> float:
        """Poller and database CPU: what a loaded machine (other processes) changes least."""
        return 1000 * (self.cpu_seconds + self.db_cpu_seconds) / self.size

    def line(self) -> str:
        return (
            f"{self.code:8} delay {self.delay * 1000:3.0f} ms {self.size:6,} connections {self.name:6} pass: "
            f"{self.seconds:6.1f} s (run {self.run_seconds:6.1f} s) {self.ms_per_connection:5.2f} ms/conn; "
            f"cpu {1000 * self.cpu_seconds / self.size:4.2f} + db {1000 * self.db_cpu_seconds / self.size:4.2f} "
            f"ms/conn; peak RSS {self.peak_rss_mib:5.1f} MiB; db connections {self.db_connections}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", help=f"comma-separated connection counts (default {','.join(map(str, SIZES))})")
    parser.add_argument("--delays", help="comma-separated fetch delays in seconds (default 0,0.1)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))}")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the poller (repeatable)"
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        help="another checkout of KeyBuzz (e.g. before a change): each of its runs follows this checkout's, "
        "on the same fresh tables, with its own shipped settings and --compare-env",
    )
    parser.add_argument("--compare-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true", help="one JSON object per run, then the ratios")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    delays = [float(d) for d in args.delays.split(",")] if args.delays else list(DELAYS)

    url = os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    workdir = Path(tempfile.mkdtemp(prefix="poll-scale-"))
    codes = {"this": (ROOT, poller_env(url, workdir, dict(item.split("=", 1) for item in args.env)))}
    if args.compare:
        compare_env = dict(item.split("=", 1) for item in args.compare_env)
        compared = Path(args.compare).resolve()
        if not (compared / "benchmarks" / "poll_scale.py").exists():  # its poller imports SlowMockSource from there
            sys.exit(f"copy benchmarks/poll_scale.py into {compared / 'benchmarks'} first")
        codes["compared"] = (compared, poller_env(url, workdir, compare_env))
    manage(ROOT, codes["this"][1], "migrate", "--verbosity", "0")
    import psycopg

    runs: list[Pass] = []
    with psycopg.connect(url, autocommit=True, application_name=BENCH_APP) as db:
        startup: dict[str, float] = {}
        for code, (root, env) in codes.items():
            shown = manage(root, env, "shell", "-c", SHOW_SETTINGS).strip().splitlines()[-1]
            connections_create(db, 0)
            empty = poll_once(url, root, env, code=code, delay=0, size=0, name="empty", workdir=workdir)
            startup[code] = empty.cpu_seconds
            print(f"{code} ({root}): {shown}; an empty run takes {empty.seconds:.1f} s, {empty.cpu_seconds:.2f} s CPU")
        for delay in delays:
            for size in sizes:
                for code, (root, env) in codes.items():
                    connections_create(db, size)
                    for name in ("first", "second"):
                        run = poll_once(url, root, env, code=code, delay=delay, size=size, name=name, workdir=workdir)
                        run.cpu_seconds = round(max(run.cpu_seconds - startup[code], 0.0), 2)
                        runs.append(run)
                        print(json.dumps(asdict(run)) if args.json else run.line(), flush=True)
                        if run.failures or run.polled != size or run.new_messages != size * MESSAGES_PER_POLL:
                            sys.exit(
                                f"run failed: {run.polled} of {size} connections polled, {run.failures} failures, "
                                f"{run.new_messages} new messages (see {workdir / 'poller.log'})"
                            )
    report(runs, sizes, delays, list(codes), as_json=args.json)


def report(runs: list[Pass], sizes: list[int], delays: list[float], codes: list[str], *, as_json: bool) -> None:
    small, large = min(sizes), max(sizes)
    ratios: dict[str, dict[str, float]] = {}
    if not as_json:
        print(f"per connection, {large:,} / {small:,} connections (1.00 is linear; target <= {TARGET_RATIO}):")
    for code in codes:
        for delay in delays:
            for name in ("first", "second"):
                base, top = (
                    next(r for r in runs if (r.code, r.delay, r.size, r.name) == (code, delay, size, name))
                    for size in (small, large)
                )
                wall = top.ms_per_connection / base.ms_per_connection
                cpu = top.cpu_ms_per_connection / base.cpu_ms_per_connection
                ratios[f"{code} delay={delay:g}s {name}"] = {"run": round(wall, 2), "cpu": round(cpu, 2)}
                if not as_json:
                    print(
                        f"{code:8} delay {delay * 1000:3.0f} ms {name:6} pass: run "
                        f"{top.ms_per_connection:5.2f} / {base.ms_per_connection:5.2f} ms = {wall:.2f}; cpu "
                        f"{top.cpu_ms_per_connection:5.2f} / {base.cpu_ms_per_connection:5.2f} ms = {cpu:.2f}"
                        + ("" if max(wall, cpu) <= TARGET_RATIO else f"  (over {TARGET_RATIO})")
                    )
    if as_json:
        print(json.dumps({"ratios": ratios}))
        return
    for code in codes:
        mine = [r for r in runs if r.code == code]
        rss = [r.peak_rss_mib for r in mine]
        print(
            f"{code:8} peak RSS {min(rss):.1f} to {max(rss):.1f} MiB; "
            f"at most {max(r.db_connections for r in mine)} database connections at once"
        )
        for r in mine:
            if r.delay >= 0.1 and r.size >= 10000:
                verdict = "ok" if r.seconds <= TARGET_SECONDS_10K_SLOW else f"over {TARGET_SECONDS_10K_SLOW:g} s"
                print(
                    f"{code:8} {r.size:,} connections, {r.delay * 1000:.0f} ms fetch, {r.name} pass: "
                    f"{r.seconds:.1f} s from start to exit ({verdict})"
                )


SHOW_SETTINGS = (
    "import json; from django.conf import settings; "
    "print(json.dumps({k: getattr(settings, k) for k in dir(settings) if k.startswith('AMAZON_POLL_')}))"
)


def poller_env(url: str, workdir: Path, overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMAZON_", "DATABASE_", "BENCH_"))}
    env.update(product_env(database_url=url, secrets_path=str(workdir / "secrets.json")))
    env.update(
        {
            "KEYBUZZ_VAR_DIR": str(workdir),
            "AMAZON_MOCK_MESSAGES_PER_POLL": str(MESSAGES_PER_POLL),
            "AMAZON_MOCK_WINDOW_SECONDS": "0",
            "AMAZON_POLL_INTERVAL_SECONDS": "0",
        }
    )
    env.update(overrides)
    return env


def manage(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def connections_create(db: Any, size: int) -> None:
    """A fresh deployment's tables (TRUNCATE also forgets their planner statistics) and `size`
    connected connections, ten per tenant, written before the run starts."""
    db.execute("TRUNCATE keybuzz_tenant, marketplaces_pollrun, marketplaces_pollcounter CASCADE")
    if not size:
        return
    tenants = max(size // 10, 1)
    db.execute(
        "INSERT INTO keybuzz_tenant (id, slug, name, is_active, created_at, updated_at)"
        " SELECT gen_random_uuid(), 'scale-' || i, 'Scale ' || i, true, now(), now()"
        " FROM generate_series(0, %s - 1) AS i",
        (tenants,),
    )
    db.execute(
        "INSERT INTO marketplaces_marketplaceconnection (id, tenant_id, type, status, selling_partner_id, region,"
        " marketplace_ids, app_source, secret_ref, connected_at, poll_cursor, lease_owner, last_error,"
        " consecutive_failures, message_count, ticket_count, spapi_error, created_at, updated_at)"
        " SELECT gen_random_uuid(), t.id, 'AMAZON', 'CONNECTED', 'SCALE' || lpad(i::text, 6, '0'), 'EU',"
        " '[]'::jsonb, 'external_test', '', now(), '', '', '', 0, 0, 0, '',"
        " now() - interval '1 minute', now() - interval '1 minute'"
        " FROM generate_series(0, %s - 1) AS i"
        " JOIN (SELECT id, row_number() OVER (ORDER BY slug) - 1 AS n FROM keybuzz_tenant) AS t"
        " ON t.n = i %% %s",
        (size, tenants),
    )


def poll_once(
    url: str, root: Path, env: dict[str, str], *, code: str, delay: float, size: int, name: str, workdir: Path
) -> Pass:
    env = dict(env)
    if delay:
        env["AMAZON_MESSAGE_SOURCE"] = "benchmarks.poll_scale.SlowMockSource"
        env["BENCH_FETCH_DELAY_SECONDS"] = str(delay)
    sampler = ConnectionSampler(url)
    log = workdir / "poller.log"  # the last run's, as cron would keep it
    with open(log, "w") as stderr, tempfile.TemporaryFile("w+") as stdout:
        sampler.start()
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "poll_amazon", "--once", "--json"],
            cwd=root,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all children so far).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        stdout.seek(0)
        out = stdout.read()
    if process.returncode:
        sys.exit(f"poll_amazon exited {process.returncode}: {out[-1000:]} (see {log})")
    summary = json.loads(out.strip().splitlines()[-1])
    return Pass(
        code=code,
        delay=delay,
        size=size,
        name=name,
        seconds=round(seconds, 2),
        run_seconds=round(summary["seconds"], 2),
        polled=summary["connections"],
        new_messages=summary["new_messages"],
        failures=summary["failures"],
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
        db_connections=sampler.most,
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        db_cpu_seconds=round(sampler.cpu_seconds(), 2),
    )


class ConnectionSampler:
    """The most client connections to the benchmark's database at once, besides its own, and the CPU
    time their backends used (the last reading of each; a backend's last 20 ms may be missed)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[1]
        self.most = 0
        self._cpu: dict[int, float] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, application_name=BENCH_APP) as db:
            while not self._done.is_set():
                pids = [
                    pid
                    for (pid,) in db.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
                        " AND application_name <> %s",
                        (self.name, BENCH_APP),
                    )
                ]
                self.most = max(self.most, len(pids))
                for pid in pids:
                    self._cpu[pid] = self._read_cpu(pid) or self._cpu.get(pid, 0.0)
                self._done.wait(0.02)

    def _read_cpu(self, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone, or PostgreSQL is on another host
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime, stime

    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())


if __name__ == "__main__":
    main()
