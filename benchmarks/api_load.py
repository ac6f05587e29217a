"""The agents' API under load, against a bare Django view in the same run, on PostgreSQL.

    .venv/bin/python benchmarks/api_load.py [--sizes 10000,100000,1000000] [--seconds 15] [--rounds 3]
        [--connections 32] [--load-generator auto|wrk|python] [--keep] [--quick] [--explain] [--json]

Uses its own database (BENCH_API_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/keybuzz_bench_api),
created if missing, migrated with `manage.py migrate`, and dropped at the end unless --keep (a kept database is
topped up, or reseeded when it holds more tickets than the first size, by the next run).

Seeding (plain SQL: INSERT ... SELECT over generate_series, in one transaction, with the indexes that back no
constraint dropped before and built again after): 100 tenants, one of which holds a fifth of the tickets and
the other 99 the rest evenly; per tenant an owner (one password hash, computed once) and one CONNECTED Amazon
connection; per ticket a buyer message, a SENT reply for 2/3 of them and a follow-up buyer message for 2/3 of
them (2.33 messages a ticket; the buyer's are also ExternalMessage rows, which the messages point at), bodies
of 28-55 words from a small vocabulary (the common word "delivery" is in about half of the buyer messages,
the rare word "waterproof" in one message of 2,000, "xylophone" in none), order ids ddd-ddddddd-ddddddd,
each ticket's order context as sync_orders stores it once the order is fetched (about 520 bytes of JSON),
last_message_at spread over 90 days, mostly RESOLVED/CLOSED with OPEN/PENDING tickets concentrated in the last
two days and a few older ones left overdue (about 7% of the tickets). The columns the application keeps up to
date are written consistently (the ticket's last inbound and reply times and message figures, the
connections' counts); a column the seeder does not know is named in a note. Sizes grow in one database
(--sizes 10000,100000: seed 10k, measure, add 90k, measure), then VACUUM ANALYZE.

Serving: gunicorn exactly as deployed (`gunicorn --config deploy/gunicorn.conf.py`: its worker count, sync
workers, access log, DEBUG off), on a free loopback port. The baseline is the same command with the same
settings and middleware but DJANGO_SETTINGS_MODULE pointing at a module generated into a temporary folder,
`from keybuzz.settings import *` plus its own ROOT_URLCONF: one plain Django view that returns, as a
JsonResponse, the JSON of a typical tenant's first list page (so the same bytes a list answer has), with no
authentication and no query. A third gunicorn (same config, `wsgi_app` a Django-free WSGI callable
returning those bytes) is the floor: what the load generator and gunicorn manage on their own.

Load: each endpoint for --seconds (after a short unrecorded warm-up) with --connections concurrent clients,
--rounds times (rounds outermost; the median round is reported). The bare view is measured again after each
API endpoint, and an endpoint's ratio in a round is its req/s over the mean of the bare view's just before
and just after it: on a shared machine whose speed drifts by a third within minutes, a baseline measured
once per round made the ratios of the same code move by as much. The reported ratio is the median of the
rounds' ratios. The generator is wrk when installed (a generated Lua script picks a random (path, token)
pair per request; req/s and status codes are then counted in gunicorn's access log, the answers completed
within the measured window, because wrk only counts the answers to its own requests that arrive before it
stops; its latencies include the warm-up), else Python processes with threads, one http.client connection per
request (gunicorn's sync workers close every connection anyway), which time every request. After each endpoint
a probe request waits its turn, so the next endpoint starts on a server with nothing queued. Requests are
spread over the 100 tenants' tokens (minted once per size with the project's token code, before the load; the
largest tenant's owner also logs in once through POST /api/v1/auth/token, which checks the login path without
tripping the login throttle); list and searches have a second row for the largest tenant alone. Per endpoint:
req/s, ratio (above), p50 and p99 latency, non-2xx responses and failed connections (any is
printed loudly and the exit status is 2), and the CPU the generator itself used (in cores): on a 2-core
machine it competes with gunicorn and PostgreSQL, which is why the baseline is measured the same way and the
ratio is the figure to compare.

Server time: every endpoint once more in-process (Django's test client on the same database and settings),
for a typical tenant and for the largest one: the median over 20 requests after 10 warm-up ones of the time, of
the queries' own time ("sql ms", timed around each query by an execute wrapper, round trip included: the rest
is Python, authentication, serialization) and of the number of queries, and the query that takes the longest
(--explain prints its plan, EXPLAIN ANALYZE, for the largest tenant). How idle the CPUs were over the 2 s
before each size's load is printed too: work of others on the machine makes every figure noisy. --json
prints all figures as one JSON object instead of the tables. --quick: sizes 10000, 5 s, 1 round unless
given (a smoke run). Setup failures exit 1 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import ensure_database  # noqa: E402  (needs ROOT on the path)
from tests.net import HOST, free_port  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/keybuzz_bench_api"
TENANTS = 100
SLUG_PREFIX = "bench-api-"  # + the tenant's index, 000-099; 000 is the largest
PASSWORD = "bench-api-password-not-secret"
BATCH = 50_000  # tickets per INSERT ... SELECT
BULK_TABLES = ("tickets_ticket", "tickets_ticketmessage", "marketplaces_externalmessage")
RARE_WORD, COMMON_WORD, MISSING_WORD = "waterproof", "delivery", "xylophone"
RARE_EVERY = 2000  # one buyer message in RARE_EVERY mentions the rare word
DETAIL_IDS_PER_TENANT = 10
# The warm-up reaches the steady state a gunicorn worker serves in: psycopg prepares a statement at its fifth
# run (DATABASE_PREPARE_THRESHOLD) and PostgreSQL plans it five more times before it keeps a generic plan.
PROFILE_REQUESTS, PROFILE_WARMUP = 20, 10


class SetupError(Exception):
    """The benchmark could not be set up: one line, exit 1."""


# -- what is measured -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # "{id}": a ticket id of the requesting tenant; "{cursor}": the cursor to its middle page
    scope: str  # "all": requests spread over every tenant; "largest": the largest tenant only; "bare": no token
    server: str = "api"  # "api", "bare" (the bare Django view) or "floor" (the bare WSGI callable)
    profile: bool = True  # also timed in-process (once per path: the "largest" rows reuse the "all" one)


BASELINE = "baseline: bare Django view"


def endpoints() -> list[Endpoint]:
    rows = [
        Endpoint("floor: bare WSGI, no Django", "/bare", "bare", server="floor", profile=False),
        Endpoint(BASELINE, "/bare", "bare", server="bare", profile=False),
        Endpoint("list", "/api/v1/tickets/", "all"),
        Endpoint("list [largest]", "/api/v1/tickets/", "largest", profile=False),
        Endpoint("list, middle page", "/api/v1/tickets/?cursor={cursor}", "all"),
        Endpoint("list, middle page [largest]", "/api/v1/tickets/?cursor={cursor}", "largest", profile=False),
        Endpoint("list overdue", "/api/v1/tickets/?overdue=true", "all"),
        Endpoint("detail", "/api/v1/tickets/{id}/", "all"),
    ]
    for kind, word in (("rare", RARE_WORD), ("common", COMMON_WORD), ("missing", MISSING_WORD)):
        rows.append(Endpoint(f"search {kind} '{word}'", f"/api/v1/tickets/?q={word}", "all"))
        rows.append(Endpoint(f"search {kind} [largest]", f"/api/v1/tickets/?q={word}", "largest", profile=False))
    rows.append(Endpoint("stats", "/api/v1/tickets/stats/", "all"))
    rows.append(Endpoint("amazon status", "/api/v1/marketplaces/amazon/status", "all"))
    return rows


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # empty with wrk (which gives percentiles)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    error_sample: str = ""
    generator_cpu: float = 0.0  # cores used by the load generator during the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Profile:
    ms: float
    queries: int
    sql_ms: float  # the queries' own time (the rest is Python: auth, ORM compilation, serialization)
    slowest_ms: float
    slowest_sql: str  # its text, with placeholders
    slowest_params: Any  # and its parameters (for --explain)


# -- environment ----------------------------------------------------------------------------------


def bench_env(url: str, tmp: Path) -> dict[str, str]:
    """Production settings (DEBUG off) with throwaway secrets, for this process, migrate and gunicorn."""
    # Nothing of the caller's secret store or gunicorn tuning leaks in: the deployed defaults apply.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SECRETS_", "GUNICORN_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "keybuzz.settings",
            "KEYBUZZ_ENV_FILE": "none",
            "DEBUG": "false",
            "DJANGO_SECRET_KEY": "benchmark-" + "x" * 50,
            "JWT_SECRET": "benchmark-jwt-secret-0123456789abcdef",
            # The largest run measures for a while after the tokens are minted.
            "JWT_ACCESS_TOKEN_MINUTES": "720",
            "SECRETS_BACKEND": "local",
            "SECRETS_LOCAL_KEY": "0" * 43 + "=",
            "SECRETS_LOCAL_PATH": str(tmp / "secrets.json"),
            "KEYBUZZ_VAR_DIR": str(tmp),
            "MEDIA_ROOT": str(tmp / "media"),
            "DATABASE_URL": url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            # Clients connect to gunicorn directly, not through nginx: the login throttle's address is the peer's.
            "TRUSTED_PROXY_COUNT": "0",
            "AMAZON_SPAPI_APP_SOURCE": "external_test",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "line",  # the wrk load reads gunicorn's access lines
        }
    )
    return env


def cpu_idle(seconds: float = 2.0) -> float:
    """The share of the machine's CPU time left idle over `seconds`: other work on the machine (a test
    run, a build) competes with the benchmark for the same CPUs, and its figures are then noisy."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    idle, total = sample()
    time.sleep(seconds)
    idle_after, total_after = sample()
    return (idle_after - idle) / max(1, total_after - total)


def progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when this benchmark dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


class Processes:
    """Every process the benchmark starts, each in a process group of its own, ended by its id."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: gunicorn's workers are ended with their master
                preexec_fn=_die_with_parent,  # safe here: no other thread runs while servers start
            )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # A worker still finishing a request after its master left: the group is ours, end it too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)
        self.started.clear()


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    probe: str  # a path it answers 200 on

    def workers(self) -> int:
        try:
            return len(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split())
        except OSError:
            return 0


def last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def start_gunicorn(
    processes: Processes, name: str, env: dict[str, str], tmp: Path, probe: str, app: str | None = None
) -> Server:
    port = free_port()
    log = tmp / f"gunicorn-{name}.log"  # where journald would have the access and error lines
    argv = [str(Path(sys.executable).with_name("gunicorn")), "--config", "deploy/gunicorn.conf.py"]
    proc = processes.start([*argv, *([app] if app else [])], env={**env, "GUNICORN_BIND": f"{HOST}:{port}"}, log=log)
    server = Server(name, port, proc, log, probe)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SetupError(f"gunicorn ({name}) exited with {proc.returncode}: {last_line(log)}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{probe}", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SetupError(f"gunicorn ({name}) did not answer {probe} within 60 s: {last_line(log)}")
        time.sleep(0.25)
    # Every worker booted (each imports Django), so the first measured round does not pay for it.
    while 0 < server.workers() < expected_workers(env) and time.monotonic() < deadline:
        time.sleep(0.25)
    return server


def drain(server: Server) -> None:
    """Waits until the server has worked through what a run left queued: gunicorn's sync workers answer
    a request even when its client is gone, so the next endpoint would start on a busy server."""
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"http://{HOST}:{server.port}{server.probe}", timeout=600).read()


def expected_workers(env: dict[str, str]) -> int:
    """deploy/gunicorn.conf.py's count, computed the same way (its _cpus())."""
    if env.get("GUNICORN_WORKERS"):
        return int(env["GUNICORN_WORKERS"])
    return min(2 * len(os.sched_getaffinity(0)) + 1, 12)


# -- seeding --------------------------------------------------------------------------------------

NAMES = "Anna Ben Chloe David Emma Felix Greta Hugo Ines Jonas Klara Lukas Mia Noah Olivia Paul Rosa Sofia Tom Zoe"
SUBJECTS = [
    "Question about order %1$s",
    "Where is my parcel? Order %1$s",
    "Return request for order %1$s",
    "Item arrived damaged (%1$s)",
    "Refund not received - order %1$s",
    "Wrong size delivered, order %1$s",
    "Invoice needed for %1$s",
    "Inquiry from Amazon customer %2$s",
]
ITEMS = [
    "phone case",
    "charging cable",
    "coffee grinder",
    "yoga mat",
    "water bottle",
    "desk lamp",
    "backpack",
    "bluetooth speaker",
    "kitchen scale",
    "pair of running shoes",
    "baby monitor",
    "garden hose",
    "office chair",
    "electric kettle",
    "set of knives",
    "winter jacket",
    "gaming mouse",
    "air fryer",
    "camping tent",
    "vacuum cleaner",
]
PROBLEMS = [
    "arrived damaged",
    "never arrived",
    "is the wrong size",
    "stopped working after two days",
    "is missing a part",
    "does not match the description",
    "looks like it was opened before",
    "came in the wrong colour",
    "makes a strange noise",
    "has a deep scratch on the front",
]
OPENERS = ["Hello,", "Hi,", "Good morning,", "Dear seller,", "Hello there,", "Hi team,", "Good evening,"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend"]
FIRST_HALVES = [
    "{opener} I ordered a {item} last week and it {problem}.",
    "{opener} the {item} I received {problem} and I am quite disappointed with this purchase.",
    "{opener} my {item} {problem}, can you help me please? I have been a customer for years.",
    "{opener} the delivery of my {item} was three days late and now it {problem}.",
    "{opener} tracking says the delivery happened yesterday but the {item} is not here and nobody rang.",
    "{opener} I bought this {item} as a gift and unfortunately it {problem}.",
    "{opener} I would like to know why my {item} {problem} when the listing promised otherwise.",
    "{opener} second message about the {item}: it still {problem} and I have had no answer yet.",
]
SECOND_HALVES = [
    "Could you send a replacement or refund me? I would prefer a refund to my card if possible.",
    "The delivery driver left the parcel at the door in the rain and the box was soaked.",
    "I need it before my trip on {day}, so please answer quickly. Thank you in advance.",
    "Please tell me how to return it, I cannot find the return label anywhere in my account.",
    "I have attached photos of the {item} and of the packaging so that you can see the problem.",
    "Is there a new delivery date? The tracking number you sent does not work on the carrier's site.",
    "If this is not solved by {day} I will open a claim with Amazon, which I would rather avoid.",
    "My neighbour ordered the same {item} from you and had no problem at all, so I am surprised.",
    "Can you confirm the address you have? The delivery may have gone to my old flat.",
    "Thanks for your help, I hope we can sort this out without too much back and forth.",
]
REPLIES = [
    "Thank you for your message about your {item}, and sorry that it {problem}.",
    "We are sorry to hear about your {item}. We checked the order with our warehouse this morning.",
    "Thank you for contacting us. We understand how annoying it is when a {item} {problem}.",
    "Many thanks for the photos of the {item}, they help us a lot with the carrier.",
]
REPLY_ENDINGS = [
    "We have sent a replacement today; the delivery should take two to three working days.",
    "We have issued a full refund, which will appear on your statement within five days.",
    "Could you please send us a photo of the label so that we can check it with the carrier?",
    "You can return it free of charge with the label in your orders page; we refund on receipt.",
    "We have asked the carrier to investigate and will get back to you before {day}.",
]


def fragments(templates_a: list[str], templates_b: list[str], count: int, seed: int) -> list[str]:
    """`count` texts of two sentences each, the slots filled at random (reproducibly)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        slots = {
            "opener": rng.choice(OPENERS),
            "item": rng.choice(ITEMS),
            "problem": rng.choice(PROBLEMS),
            "day": rng.choice(DAYS),
        }
        out.append(f"{rng.choice(templates_a).format(**slots)} {rng.choice(templates_b).format(**slots)}")
    return out


def h(expr: str, seed: int) -> str:
    """SQL: a non-negative pseudo-random bigint from `expr`, reproducible, one stream per seed."""
    return f"(hashint8extended(({expr})::bigint, {seed}) & 9223372036854775807)"


# The columns written, per table; any other NOT NULL column without a default (one added since this was
# written) gets a neutral value of its type, and a note says so; so does a nullable one (left NULL), since a
# column the application keeps up to date (a denormalised time or count) would make the figures wrong.
FILLERS = {
    "character varying": "''",
    "text": "''",
    "boolean": "false",
    "jsonb": "'{}'::jsonb",
    "timestamp with time zone": "now()",
    "date": "current_date",
    "uuid": "gen_random_uuid()",
}
# Known, and left NULL on purpose: nothing has happened to them (no order fetched, no failure, no retry).
LEFT_NULL = {
    "marketplaces_marketplaceconnection": {
        "lease_expires_at",
        "last_error_at",
        "spapi_forbidden_at",
        "disconnected_at",
    },
    "tickets_ticketmessage": {"next_attempt_at", "send_started_at", "stopped_response_due_at"},
    # The message figures (tickets.models.MESSAGE_FIGURES): counted once the messages are in
    # (figures_fill_disable). Named here: the seeder runs before Django is set up, on any schema.
    "tickets_ticket": {"preview_direction", "preview_author_name", "preview_body", "preview_sent_at"}
    | {"message_count", "note_count", "failed_count"},
}
_noted: set[str] = set()


def _columns(cur: Any, table: str) -> list[tuple[str, str, bool]]:
    """(name, type, NOT NULL without a default) of the table's columns, identity columns left out."""
    rows = cur.execute(
        "SELECT column_name, data_type, is_nullable = 'NO' AND column_default IS NULL"
        " FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s"
        " AND is_identity = 'NO'",
        (table,),
    ).fetchall()
    return [(name, kind, bool(required)) for name, kind, required in rows]


def insert(
    cur: Any,
    table: str,
    columns: list[str],
    select: str,
    params: dict[str, Any] | None = None,
    optional: dict[str, str] | None = None,
) -> None:
    """INSERT INTO table (columns...) SELECT ...: `select` lists the values in the same order, then
    "/*extra*/" where the values of `optional` columns (written only when the table has them) and of
    unknown NOT NULL columns go, then its FROM clause."""
    names, values = [], []
    for name, kind, required in _columns(cur, table):
        if name in columns or name == "id" or name in LEFT_NULL.get(table, ()):
            continue
        if optional and name in optional:
            names.append(name)
            values.append(optional[name])
        elif required:
            names.append(name)
            values.append(FILLERS.get(kind, "0"))
            if f"{table}.{name}" not in _noted:
                progress(f"note: {table}.{name} ({kind}) is unknown to the seeder: filled with {values[-1]}")
        elif f"{table}.{name}" not in _noted:
            progress(f"note: {table}.{name} ({kind}, nullable) is unknown to the seeder: left NULL")
        _noted.add(f"{table}.{name}")
    extra_names = "".join(f", {name}" for name in names)
    extra_values = "".join(f", {value}" for value in values)
    cur.execute(
        f"INSERT INTO {table} ({', '.join(columns)}{extra_names}) {select.replace('/*extra*/', extra_values)}",
        params,
    )


def seed_base(cur: Any, password_hash: str) -> None:
    """The 100 tenants, their owners, memberships and connections."""
    cur.execute("TRUNCATE keybuzz_tenant, auth_user CASCADE")  # CASCADE: every table that refers to them
    insert(
        cur,
        "keybuzz_tenant",
        ["id", "slug", "name", "is_active", "created_at", "updated_at"],
        f"SELECT gen_random_uuid(), '{SLUG_PREFIX}' || lpad(i::text, 3, '0'), 'Bench seller ' || i, true,"
        " now() - interval '400 days', now() /*extra*/ FROM generate_series(0, %(last)s) AS i",
        {"last": TENANTS - 1},
    )
    insert(
        cur,
        "auth_user",
        [
            "password",
            "last_login",
            "is_superuser",
            "username",
            "first_name",
            "last_name",
            "email",
            "is_staff",
            "is_active",
            "date_joined",
        ],
        f"SELECT %(hash)s, NULL, false, '{SLUG_PREFIX}owner-' || substr(t.slug, {len(SLUG_PREFIX) + 1}), 'Agent',"
        f" substr(t.slug, {len(SLUG_PREFIX) + 1}), 'owner-' || t.slug || '@bench.example', false, true,"
        " now() - interval '400 days' /*extra*/ FROM keybuzz_tenant t",
        {"hash": password_hash},
    )
    insert(
        cur,
        "keybuzz_membership",
        ["user_id", "tenant_id", "role", "created_at"],
        "SELECT u.id, t.id, 'owner', now() - interval '400 days' /*extra*/ FROM keybuzz_tenant t"
        f" JOIN auth_user u ON u.username = '{SLUG_PREFIX}owner-' || substr(t.slug, {len(SLUG_PREFIX) + 1})",
    )
    insert(
        cur,
        "marketplaces_marketplaceconnection",
        [
            "id",
            "tenant_id",
            "type",
            "status",
            "selling_partner_id",
            "region",
            "marketplace_ids",
            "app_source",
            "secret_ref",
            "connected_at",
            "poll_cursor",
            "lease_owner",
            "last_error",
            "consecutive_failures",
            "spapi_error",
            "last_polled_at",
            "next_poll_at",
            "created_at",
            "updated_at",
        ],
        "SELECT gen_random_uuid(), t.id, 'AMAZON', 'CONNECTED', 'A' || upper(substr(md5(t.slug), 1, 13)), 'EU',"
        " '[\"A1PA6795UKMFR9\", \"A13V1IB3VIYZZH\"]'::jsonb, 'external_test',"
        " 'keybuzz/tenants/' || t.id || '/amazon/A' || upper(substr(md5(t.slug), 1, 13)), now() - interval '400 days',"
        " '', '', '', 0, '', now() - interval '1 minute', now() + interval '4 minutes',"
        " now() - interval '400 days', now() /*extra*/ FROM keybuzz_tenant t",
        optional={"message_count": "0", "ticket_count": "0"},  # counted once the tickets are in (seed())
    )


def seed_session(cur: Any) -> None:
    """Temporary tables the batches read: tenant index -> ids, and the text fragments."""
    cur.execute(
        "CREATE TEMP TABLE bench_map AS"
        f" SELECT substr(t.slug, {len(SLUG_PREFIX) + 1})::int AS idx, t.id AS tenant_id, c.id AS connection_id,"
        " u.id AS user_id, u.first_name || ' ' || u.last_name AS agent_name"
        " FROM keybuzz_tenant t JOIN marketplaces_marketplaceconnection c ON c.tenant_id = t.id"
        " JOIN keybuzz_membership m ON m.tenant_id = t.id JOIN auth_user u ON u.id = m.user_id"
        f" WHERE starts_with(t.slug, '{SLUG_PREFIX}')"
    )
    cur.execute("CREATE UNIQUE INDEX ON bench_map (idx)")
    for table, texts in (
        ("bench_buyer_a", fragments(FIRST_HALVES, [""], 600, 1)),
        ("bench_buyer_b", fragments(SECOND_HALVES, [""], 600, 2)),
        ("bench_reply", fragments(REPLIES, REPLY_ENDINGS, 200, 3)),
    ):
        cur.execute(f"CREATE TEMP TABLE {table} (i int PRIMARY KEY, text text NOT NULL)")
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, t.strip()) for i, t in enumerate(texts)])
    cur.execute("ANALYZE bench_map, bench_buyer_a, bench_buyer_b, bench_reply")


# What sync_orders stores on every ticket of an order it fetched (about 520 bytes): one item, one package.
_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\''
ORDER_CONTEXT_SQL = (
    "jsonb_build_object('orderId', order_id,"
    " 'status', CASE WHEN roll < 70 THEN 'SHIPPED' WHEN roll < 90 THEN 'UNSHIPPED' ELSE 'PARTIALLY_SHIPPED' END,"
    f" 'purchaseDate', to_char((first_at - interval '3 days') AT TIME ZONE 'UTC', {_ISO}),"
    f" 'latestShipDate', to_char((first_at - interval '1 day') AT TIME ZONE 'UTC', {_ISO}),"
    f" 'latestDeliveryDate', to_char((first_at + interval '4 days') AT TIME ZONE 'UTC', {_ISO}),"
    " 'marketplaceId', 'A1PA6795UKMFR9', 'fulfillmentChannel', 'MERCHANT',"
    " 'items', jsonb_build_array(jsonb_build_object('asin', 'B0' || upper(substr(md5(order_id), 1, 8)),"
    "  'sku', 'KB-' || upper(substr(md5(order_id), 9, 6)), 'title', 'Bamboo wireless keyboard - walnut, DE layout',"
    "  'quantity', 1 + mod(roll, 3), 'price', '49.99', 'currency', 'EUR')),"
    " 'packages', jsonb_build_array(jsonb_build_object('carrier', 'DHL',"
    "  'trackingNumber', '0034043' || lpad(mod(n, 10000000000000)::text, 13, '0'), 'status', 'IN_TRANSIT')))"
)


def seed_batch(cur: Any, lo: int, hi: int, now: datetime) -> None:
    """Tickets lo..hi-1 (global index n: ticket id n+1, messages 3n+1..3n+3, external messages 2n+1..2n+2)."""
    # Tenant 0 gets every fifth ticket; the other four of each five go round the 99 others.
    tenant = "CASE WHEN mod(n, 5) = 0 THEN 0 ELSE 1 + mod((n / 5) * 4 + mod(n, 5) - 1, 99) END"
    age = f"mod({h('n', 1)}, 7776000)"  # seconds, up to 90 days
    order_id = (
        f"lpad(mod({h('n', 6)}, 1000)::text, 3, '0') || '-' || lpad(mod({h('n', 7)}, 10000000)::text, 7, '0')"
        f" || '-' || lpad(mod({h('n', 8)}, 10000000)::text, 7, '0')"
    )
    cur.execute(
        "CREATE TEMP TABLE bench_src AS"
        " WITH base AS ("
        f"  SELECT n, mod(n, 3) AS shape, {tenant} AS idx,"
        f"   %(now)s::timestamptz - make_interval(secs => {age}) AS last_at, {age} < 172800 AS recent,"
        f"   mod({h('n', 2)}, 100) AS roll, {order_id} AS order_id,"
        f"   (%(names)s::text[])[1 + mod({h('n', 10)}, %(name_count)s)::int] || ' '"
        f"    || chr(65 + mod({h('n', 11)}, 26)::int) || '.' AS customer_name,"
        "   substr(md5(n::text), 1, 16) || '@marketplace.amazon.de' AS customer_ref"
        "  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS n)"
        " SELECT b.*, m.tenant_id, m.connection_id, m.user_id, m.agent_name,"
        # Recent tickets are mostly open; older ones mostly done, a few forgotten (the overdue ones).
        "  CASE WHEN recent THEN CASE WHEN roll < 60 THEN 'OPEN' WHEN roll < 80 THEN 'PENDING'"
        "   WHEN roll < 95 THEN 'RESOLVED' ELSE 'CLOSED' END"
        "  ELSE CASE WHEN roll < 7 THEN 'OPEN' WHEN roll < 10 THEN 'PENDING' WHEN roll < 65 THEN 'RESOLVED'"
        "   ELSE 'CLOSED' END END AS status,"
        f"  format((%(subjects)s::text[])[1 + mod({h('n', 9)}, %(subject_count)s)::int], order_id, customer_name)"
        "   AS subject,"
        f"  CASE WHEN mod({h('n', 5)}, 4) = 0 THEN m.user_id END AS assignee_id,"
        # Shapes: 0 = buyer, buyer (unanswered); 1 = buyer, reply; 2 = buyer, reply, buyer (unanswered).
        "  last_at - interval '26 hours' AS first_at,"
        "  CASE WHEN shape = 2 THEN last_at - interval '22 hours' ELSE last_at END AS reply_at,"
        "  CASE shape WHEN 1 THEN NULL WHEN 0 THEN last_at - interval '2 hours'"
        "   ELSE last_at + interval '24 hours' END AS due_at"
        " FROM base b JOIN bench_map m ON m.idx = b.idx",
        {
            "lo": lo,
            "hi": hi,
            "now": now,
            "names": NAMES.split(),
            "name_count": len(NAMES.split()),
            "subjects": SUBJECTS,
            "subject_count": len(SUBJECTS),
        },
    )
    insert(
        cur,
        "tickets_ticket",
        [
            "id",
            "tenant_id",
            "channel",
            "connection_id",
            "thread_key",
            "subject",
            "customer_name",
            "customer_ref",
            "order_id",
            "status",
            "assignee_id",
            "last_message_at",
            "response_due_at",
            "created_at",
            "updated_at",
        ],
        "SELECT n + 1, tenant_id, 'AMAZON', connection_id, customer_ref || ':' || order_id, subject, customer_name,"
        " customer_ref, order_id, status, assignee_id, last_at, due_at, first_at, last_at /*extra*/ FROM bench_src",
        # The last buyer message's and the last live reply's times, kept on the ticket by every write;
        # and the order as sync_orders stores it once fetched (marketplaces.amazon.spapi.Order.as_dict).
        optional={
            "last_inbound_at": "CASE WHEN shape = 1 THEN first_at ELSE last_at END",
            "last_reply_at": "CASE WHEN shape = 0 THEN NULL ELSE reply_at END",
            "order_context": ORDER_CONTEXT_SQL,
            "order_context_at": "last_at",
        },
    )
    # The buyer's messages: the first one, and the follow-up of shapes 0 and 2.
    rare = f" Is the {ITEMS[0]} really {RARE_WORD}? The listing does not say so."
    cur.execute(
        "CREATE TEMP TABLE bench_in AS"
        " SELECT s.*, 2 * s.n + k AS ext_id, 3 * s.n + CASE k WHEN 1 THEN 1 ELSE 3 END AS msg_id,"
        "  CASE k WHEN 1 THEN s.first_at ELSE s.last_at END AS sent_at,"
        "  CASE k WHEN 1 THEN s.subject ELSE 'RE: ' || s.subject END AS mail_subject,"
        f"  a.text || ' ' || b.text || CASE WHEN mod({h('2 * s.n + k', 22)}, {RARE_EVERY}) = 0 THEN %(rare)s"
        "   ELSE '' END AS body"
        " FROM bench_src s CROSS JOIN generate_series(1, 2) AS k"
        f" JOIN bench_buyer_a a ON a.i = mod({h('2 * s.n + k', 20)}, 600)"
        f" JOIN bench_buyer_b b ON b.i = mod({h('2 * s.n + k', 21)}, 600)"
        " WHERE k = 1 OR s.shape <> 1",
        {"rare": rare},
    )
    insert(
        cur,
        "marketplaces_externalmessage",
        [
            "id",
            "tenant_id",
            "connection_id",
            "type",
            "external_id",
            "thread_key",
            "order_id",
            "sender",
            "subject",
            "body",
            "sent_at",
            "raw",
            "created_at",
        ],
        "SELECT ext_id, tenant_id, connection_id, 'AMAZON', '<bench-' || ext_id || '@marketplace.amazon.de>',"
        " customer_ref || ':' || order_id, order_id, customer_ref, mail_subject, body, sent_at,"
        " jsonb_build_object('source', 'bench'), sent_at /*extra*/ FROM bench_in",
    )
    message_columns = [
        "id",
        "tenant_id",
        "ticket_id",
        "direction",
        "author_id",
        "author_name",
        "body",
        "external_message_id",
        "delivery_status",
        "delivery_error",
        "delivery_attempts",
        "delivered_at",
        "delivery_ref",
        "delivery_worker",
        "origin",
        "acknowledged_violations",
        "channel_action",
        "sent_at",
        "created_at",
    ]
    insert(
        cur,
        "tickets_ticketmessage",
        message_columns,
        "SELECT msg_id, tenant_id, n + 1, 'INBOUND', NULL, customer_name, body, ext_id, '', '', 0, NULL, '', '', '',"
        " '[]'::jsonb, '', sent_at, sent_at /*extra*/ FROM bench_in",
    )
    insert(
        cur,
        "tickets_ticketmessage",
        message_columns,
        "SELECT 3 * s.n + 2, s.tenant_id, s.n + 1, 'OUTBOUND', s.user_id, s.agent_name,"
        " r.text || ' Kind regards, ' || s.agent_name, NULL, 'SENT', '', 1, s.reply_at,"
        " '<reply-' || (3 * s.n + 2) || '@relay.bench.example>', '', '', '[]'::jsonb, '', s.reply_at, s.reply_at"
        " /*extra*/"
        f" FROM bench_src s JOIN bench_reply r ON r.i = mod({h('s.n', 23)}, 200) WHERE s.shape <> 0",
    )
    cur.execute("DROP TABLE bench_src, bench_in")


FIGURES_BATCH = 100_000


def figures_fill_disable(cur: Any) -> bool:
    """Where the schema keeps each ticket's message figures by triggers on the messages (migration
    tickets 0015), turns those triggers off for the seeding transaction and says so: the new tickets'
    figures are then counted once, with the triggers' own function, after the message inserts and the
    index builds (the triggers would recount a batch's tickets after each of its inserts, without the
    messages' index, which the bulk load drops)."""
    found = cur.execute("SELECT to_regprocedure('tickets_ticket_figures(bigint[])') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return False
    cur.execute("ALTER TABLE tickets_ticketmessage DISABLE TRIGGER USER")
    return True


def seed(url: str, target: int, password_hash: str) -> tuple[int, float]:
    """Tops the database up to `target` tickets (reseeds when it holds more, or not ours). Returns
    (tickets added, seconds)."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit TO OFF")  # a crash only loses a benchmark's rows
        with conn.cursor() as cur:
            tenants = cur.execute(
                f"SELECT count(*) FROM keybuzz_tenant WHERE starts_with(slug, '{SLUG_PREFIX}')"
            ).fetchone()
            count, top = cur.execute("SELECT count(*), coalesce(max(id), 0) FROM tickets_ticket").fetchone() or (0, 0)
            all_tenants = cur.execute("SELECT count(*) FROM keybuzz_tenant").fetchone()
            if tenants != (TENANTS,) or all_tenants != (TENANTS,) or count != top or count > target:
                seed_base(cur, password_hash)
                count = 0
            seed_session(cur)
            conn.commit()
            now = datetime.now(UTC)
            # Bulk load: the indexes that back no constraint (the trigram GIN ones above all) are dropped and
            # built again after the inserts, several times faster than growing them row by row. All in one
            # transaction: a run stopped half-way rolls back to the database it found, indexes included.
            indexes = cur.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s) AND c.relnamespace ="
                " current_schema()::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_constraint k"
                " WHERE k.conindid = i.indexrelid)",
                (list(BULK_TABLES),),
            ).fetchall()
            if count < target:
                # Django's foreign keys are checked at commit; CREATE INDEX refuses to run with checks pending.
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                for name, _ in indexes:
                    cur.execute(f"DROP INDEX {name}")
            figures = figures_fill_disable(cur)
            for lo in range(count, target, BATCH):
                hi = min(lo + BATCH, target)
                seed_batch(cur, lo, hi, now)
                progress(f"  inserted {hi:,} / {target:,} tickets ({time.perf_counter() - started:.1f} s)")
            if count < target:
                cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
                built = time.perf_counter()
                for _, definition in indexes:
                    cur.execute(definition)
                progress(f"  rebuilt {len(indexes)} indexes in {time.perf_counter() - built:.1f} s")
            if figures and count < target:  # after the indexes: the count reads each ticket's messages by index
                filled = time.perf_counter()
                for lo in range(count, target, FIGURES_BATCH):
                    cur.execute(
                        "SELECT tickets_ticket_figures(ARRAY(SELECT generate_series(%s::bigint, %s)))",
                        (lo + 1, min(lo + FIGURES_BATCH, target)),
                    )
                progress(f"  counted the tickets' message figures in {time.perf_counter() - filled:.1f} s")
            if figures:
                cur.execute("ALTER TABLE tickets_ticketmessage ENABLE TRIGGER USER")
            for table in BULK_TABLES:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1"
                    f" FROM {table}), false)"
                )
            # Counts the poller keeps on each connection, when this schema has them.
            columns = {
                row[0]
                for row in cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND table_name = 'marketplaces_marketplaceconnection'"
                ).fetchall()
            }
            if {"ticket_count", "message_count"} <= columns:
                cur.execute(
                    "UPDATE marketplaces_marketplaceconnection c SET"
                    " ticket_count = (SELECT count(*) FROM tickets_ticket t WHERE t.connection_id = c.id),"
                    " message_count = (SELECT count(*) FROM marketplaces_externalmessage e"
                    "  WHERE e.connection_id = c.id)"
                )
            conn.commit()
        conn.autocommit = True
        # VACUUM too: a database in use has been vacuumed by autovacuum, which sets the visibility map
        # that index-only scans (the inbox figures' counts on partial indexes) rely on; a freshly
        # bulk-loaded one has none until autovacuum gets to it, in the middle of a measurement.
        conn.execute("VACUUM ANALYZE")
    return target - count, time.perf_counter() - started


def database_figures(url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM tickets_ticket), (SELECT count(*) FROM tickets_ticketmessage),"
            " (SELECT count(*) FROM marketplaces_externalmessage),"
            " (SELECT count(*) FROM tickets_ticket t JOIN keybuzz_tenant n ON n.id = t.tenant_id"
            f"  WHERE n.slug = '{SLUG_PREFIX}000'),"
            " (SELECT count(*) FROM tickets_ticket t JOIN keybuzz_tenant n ON n.id = t.tenant_id"
            f"  WHERE n.slug = '{SLUG_PREFIX}001'),"
            " pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    assert row is not None
    keys = ("tickets", "messages", "external_messages", "largest_tenant_tickets", "typical_tenant_tickets", "size")
    return dict(zip(keys, row, strict=True))


# -- tokens and targets ---------------------------------------------------------------------------


@dataclass
class Tenants:
    tokens: list[str]  # index 0: the largest tenant; 1: a typical one
    ticket_ids: list[list[int]]  # per tenant, a random sample for the detail endpoint
    middle_cursors: list[str]  # per tenant, the cursor of the list's page halfway down its tickets


def tenants_prepare(api: Server) -> Tenants:
    """A token per tenant (the project's token code, in-process: a login per tenant would cost a
    password hash each), and one real login, through gunicorn, for the largest tenant."""
    from django.db import connection

    from keybuzz.models import Membership
    from keybuzz.services import _token_pair  # what POST /auth/token issues, without the password check
    from tickets import pagination

    memberships = list(
        Membership.objects.select_related("user", "tenant")
        .filter(tenant__slug__startswith=SLUG_PREFIX)
        .order_by("tenant__slug")
    )
    if len(memberships) != TENANTS:
        raise SetupError(f"expected {TENANTS} bench tenants, found {len(memberships)}")
    tokens = [_token_pair(membership=m).access for m in memberships]
    body = json.dumps({"username": memberships[0].user.username, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{api.port}/api/v1/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            tokens[0] = json.loads(response.read())["access"]
    except OSError as exc:
        raise SetupError(f"POST /api/v1/auth/token for the largest tenant failed: {exc}") from None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k.slug, array_agg(x.id ORDER BY x.id) FROM (SELECT t.id, t.tenant_id, row_number() OVER"
            " (PARTITION BY t.tenant_id ORDER BY random()) AS r FROM tickets_ticket t) x"
            " JOIN keybuzz_tenant k ON k.id = x.tenant_id WHERE x.r <= %s GROUP BY k.slug ORDER BY k.slug",
            [max(DETAIL_IDS_PER_TENANT, PROFILE_REQUESTS)],
        )
        ids = [list(row[1]) for row in cursor.fetchall()]
        # The ticket halfway down each tenant's list, in the list's order: the page after it is as deep
        # as a tenant's history goes (100,000 tickets for the largest at 1M).
        cursor.execute(
            "SELECT k.slug, x.last_message_at, x.id FROM (SELECT t.tenant_id, t.last_message_at, t.id,"
            " row_number() OVER w AS r, count(*) OVER (PARTITION BY t.tenant_id) AS n FROM tickets_ticket t"
            " WINDOW w AS (PARTITION BY t.tenant_id ORDER BY t.last_message_at DESC NULLS LAST, t.id DESC)) x"
            " JOIN keybuzz_tenant k ON k.id = x.tenant_id WHERE x.r = x.n / 2 + 1 ORDER BY k.slug"
        )
        middle = [
            pagination.encode_cursor(pagination.Cursor(ordering=pagination.DEFAULT_ORDERING, value=at, last_id=pk))
            for _, at, pk in cursor.fetchall()
        ]
    if len(middle) != TENANTS:
        raise SetupError(f"expected a middle page for each of the {TENANTS} bench tenants, found {len(middle)}")
    return Tenants(tokens=tokens, ticket_ids=ids, middle_cursors=middle)


def targets(endpoint: Endpoint, tenants: Tenants) -> list[tuple[str, str]]:
    """(path, Authorization header) pairs the load picks from at random."""
    if endpoint.scope == "bare":
        return [(endpoint.path, "")]
    indexes = [0] if endpoint.scope == "largest" else range(TENANTS)
    pairs = []
    for i in indexes:
        auth = f"Bearer {tenants.tokens[i]}"
        if "{id}" in endpoint.path:
            pairs += [(endpoint.path.format(id=t), auth) for t in tenants.ticket_ids[i][:DETAIL_IDS_PER_TENANT]]
        elif "{cursor}" in endpoint.path:
            pairs.append((endpoint.path.format(cursor=tenants.middle_cursors[i]), auth))
        else:
            pairs.append((endpoint.path, auth))
    return pairs


# -- load: Python ---------------------------------------------------------------------------------


def _client_thread(
    port: int, pairs: list[tuple[str, str]], seed: int, window: tuple[float, float], out: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    recorded_from, end = window
    latencies: list[float] = out["latencies"]
    errors: Counter[str] = out["errors"]
    while True:
        path, auth = pairs[rng.randrange(len(pairs))]
        started = time.monotonic()
        if started >= end:
            return
        key = ""
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=120)
            conn.request("GET", path, headers={"Authorization": auth} if auth else {})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if not 200 <= response.status < 300:
                key = str(response.status)
                if not out["sample"]:
                    out["sample"] = f"{response.status} {path}: {body[:300]!r}"
        except (OSError, http.client.HTTPException) as exc:
            key = type(exc).__name__
            if not out["sample"]:
                out["sample"] = f"{key} {path}: {exc}"
        finished = time.monotonic()
        if recorded_from <= finished <= end:
            latencies.append((finished - started) * 1000)
            if key:
                errors[key] += 1


def _client_process(
    port: int,
    pairs: list[tuple[str, str]],
    threads: int,
    seed: int,
    barrier: Any,
    window: Any,
    results: Any,
) -> None:
    """One load-generating process: `threads` clients in a loop, timed from the shared window."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends the run (and this process) on Ctrl-C
    barrier.wait()
    recorded_from, end = window[0], window[1]
    cpu_start = sum(os.times()[:2])
    outs: list[dict[str, Any]] = [{"latencies": [], "errors": Counter(), "sample": ""} for _ in range(threads)]
    workers = [
        threading.Thread(target=_client_thread, args=(port, pairs, seed * 1000 + i, (recorded_from, end), outs[i]))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    errors: Counter[str] = Counter()
    for out in outs:
        errors.update(out["errors"])
    results.put(
        {
            "latencies": [x for out in outs for x in out["latencies"]],
            "errors": dict(errors),
            "sample": next((out["sample"] for out in outs if out["sample"]), ""),
            "cpu": sum(os.times()[:2]) - cpu_start,
        }
    )


class PythonLoad:
    name = "python"

    def __init__(self, connections: int) -> None:
        self.processes = max(1, min(connections, len(os.sched_getaffinity(0)), 4))
        self.connections = connections
        self.context = multiprocessing.get_context("spawn")  # no copy of this process's Django and sockets

    def describe(self) -> str:
        return f"python ({self.processes} processes, {self.connections} threads in all, a connection per request)"

    def run(self, server: Server, pairs: list[tuple[str, str]], seconds: float, warmup: float) -> LoadResult:
        port = server.port
        barrier = self.context.Barrier(self.processes + 1)
        window = self.context.Array("d", 2)
        results = self.context.Queue()
        share = [
            self.connections // self.processes + (i < self.connections % self.processes) for i in range(self.processes)
        ]
        procs = [
            self.context.Process(
                target=_client_process,
                args=(port, pairs, share[i], random.randrange(1 << 30), barrier, window, results),
                daemon=True,
            )
            for i in range(self.processes)
        ]
        for proc in procs:
            proc.start()
        try:
            started = time.monotonic() + 0.05
            window[0], window[1] = started + warmup, started + warmup + seconds
            barrier.wait(timeout=60)
            parts = [results.get(timeout=warmup + seconds + 180) for _ in procs]
            for proc in procs:
                proc.join(10)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        result = LoadResult(seconds=seconds)
        for part in parts:
            result.latencies_ms += part["latencies"]
            result.errors.update(part["errors"])
            result.error_sample = result.error_sample or part["sample"]
            result.generator_cpu += part["cpu"] / (warmup + seconds)
        result.requests = len(result.latencies_ms)
        if len(result.latencies_ms) >= 2:
            cuts = statistics.quantiles(result.latencies_ms, n=100)
            result.p50_ms, result.p99_ms = cuts[49], cuts[98]
        return result


# -- load: wrk ------------------------------------------------------------------------------------

WRK_SCRIPT = """
local pairs = %s
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(seed * 7919 + os.time())
end
function request()
  local pair = pairs[math.random(#pairs)]
  local headers = {}
  if pair[2] ~= "" then headers["Authorization"] = pair[2] end
  return wrk.format("GET", pair[1], headers)
end
"""
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(match[1]) * _WRK_UNITS[match[2]] if match else 0.0


class WrkLoad:
    name = "wrk"

    def __init__(self, connections: int, wrk: str, processes: Processes, tmp: Path) -> None:
        self.wrk, self.connections, self.processes, self.tmp = wrk, connections, processes, tmp
        self.threads = max(1, min(connections, len(os.sched_getaffinity(0))))

    def describe(self) -> str:
        return f"wrk ({self.threads} threads, {self.connections} connections)"

    def run(self, server: Server, pairs: list[tuple[str, str]], seconds: float, warmup: float) -> LoadResult:
        """One wrk run of warm-up + measured seconds. wrk only counts the answers to its own requests that
        arrive before it stops, which reads 0 req/s once a request waits as long as the run lasts; so
        throughput and status codes come from gunicorn's access log instead: the answers it completed
        within the measured window, whoever asked. Latencies are wrk's, over the whole run."""
        script = self.tmp / "wrk.lua"
        lua_pairs = "{" + ",".join(f"{{{json.dumps(p)}, {json.dumps(a)}}}" for p, a in pairs) + "}"
        script.write_text(WRK_SCRIPT % lua_pairs)
        duration = max(1, round(warmup + seconds))
        out = self.tmp / "wrk.out"
        out.unlink(missing_ok=True)
        offset = server.log.stat().st_size
        before = os.times()
        started = time.time()
        argv = [self.wrk, f"-t{self.threads}", f"-c{self.connections}", f"-d{duration}s", "--latency"]
        argv += ["--timeout", "120s", "-s", str(script), f"http://{HOST}:{server.port}/"]
        proc = self.processes.start(argv, env=dict(os.environ), log=out)
        try:
            proc.wait(duration + 240)
        finally:
            self.processes.stop(proc)
            self.processes.started.remove(proc)
        after = os.times()
        output = out.read_text(errors="replace")
        if not re.search(r"\d+ requests in", output):
            raise SetupError(f"could not read wrk's output: {output.strip().splitlines()[-1:] or 'nothing'}")
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        result = LoadResult(seconds=seconds, generator_cpu=cpu / duration)
        result.requests, result.errors = access_log_count(
            server.log, offset, (started + duration - seconds, started + duration)
        )
        for label, attribute in (("50%", "p50_ms"), ("99%", "p99_ms")):
            match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", output, re.MULTILINE)
            setattr(result, attribute, _wrk_ms(match[1]) if match else 0.0)
        if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
            for name, value in zip(("connect", "read", "write", "timeout"), match.groups(), strict=True):
                if int(value):
                    result.errors[f"socket {name}"] = int(value)
        if result.errors:
            result.error_sample = _error_sample(server.port, pairs)
        return result


# gunicorn's access line (deploy/gunicorn.conf.py, LOG_FORMAT=line): time first, then the request and status.
_ACCESS = re.compile(r'^(\S+) \w+ gunicorn\.access .*"[A-Z]+ [^"]* HTTP/[\d.]+" (\d{3}) ')


def access_log_count(log: Path, offset: int, window: tuple[float, float]) -> tuple[int, Counter[str]]:
    """The answers gunicorn logged from `offset` on whose time falls in `window` (epoch seconds), and
    the non-2xx ones among them by status."""
    with log.open("rb") as stream:
        stream.seek(offset)
        text = stream.read().decode(errors="replace")
    count, logged, errors = 0, 0, Counter[str]()
    for line in text.splitlines():
        match = _ACCESS.match(line)
        if not match:
            continue
        logged += 1
        at = datetime.fromisoformat(match[1]).timestamp()
        if window[0] <= at <= window[1]:
            count += 1
            if not match[2].startswith("2"):
                errors[match[2]] += 1
    if not logged:
        raise SetupError(f"no access line in gunicorn's log ({log.name}): its format changed?")
    return count, errors


def _error_sample(port: int, pairs: list[tuple[str, str]]) -> str:
    """wrk counts failures without saying what they were: ask again until one fails."""
    for path, auth in pairs[:50]:
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        try:
            conn.request("GET", path, headers={"Authorization": auth} if auth else {})
            response = conn.getresponse()
            body = response.read()
            if not 200 <= response.status < 300:
                return f"{response.status} {path}: {body[:300]!r}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__} {path}: {exc}"
        finally:
            conn.close()
    return "(not reproduced by 50 sequential requests)"


# -- server time, in-process ----------------------------------------------------------------------


class QueryTimer:
    """A Django execute wrapper: each query's own time (perf_counter, in ms), text and parameters. Unlike
    the debug cursor's log (times rounded to the ms), it also has the text of the prepared statements
    keybuzz.db.read_cursor runs, for which Django keeps none."""

    def __init__(self) -> None:
        self.queries: list[tuple[float, str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append(((time.perf_counter() - started) * 1000, sql, params))


def profile(endpoint: Endpoint, tenants: Tenants, tenant: int) -> Profile:
    """Median time and query count of one request through Django's test client (the whole stack
    but the socket and gunicorn), and the query that took longest in the median request."""
    from django.db import connection
    from django.test import Client

    client = Client(headers={"Authorization": f"Bearer {tenants.tokens[tenant]}"})
    ids = tenants.ticket_ids[tenant]
    runs: list[tuple[float, list[tuple[float, str, Any]]]] = []  # (ms, the queries with their time)
    for i in range(PROFILE_WARMUP + PROFILE_REQUESTS):
        path = endpoint.path.format(id=ids[i % len(ids)], cursor=tenants.middle_cursors[tenant])
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SetupError(f"in-process GET {path} answered {response.status_code}: {response.content[:200]!r}")
        if i >= PROFILE_WARMUP:
            runs.append((elapsed, timer.queries))
    runs.sort(key=lambda run: run[0])
    median_ms, median_queries = runs[len(runs) // 2]
    slowest_ms, slowest_sql, slowest_params = max(median_queries, key=lambda q: q[0], default=(0.0, "", None))
    return Profile(
        ms=median_ms,
        queries=int(statistics.median(len(q) for _, q in runs)),
        sql_ms=statistics.median(sum(q[0] for q in queries) for _, queries in runs),
        slowest_ms=slowest_ms,
        slowest_sql=slowest_sql,
        slowest_params=slowest_params,
    )


def sql_summary(sql: str) -> str:
    """A query in a few words: the tables it reads at its outermost level (the parts of a UNION), and how
    many subqueries it has or whether it counts."""
    froms = [(sql[: m.start()].count("(") - sql[: m.start()].count(")"), m[1]) for m in _FROM.finditer(sql)]
    if not froms:
        return sql[:60]
    top = min(depth for depth, _ in froms)
    tables = list(dict.fromkeys(table for depth, table in froms if depth == top))
    if re.search(r"\)\s*UNION\b", sql):
        return "UNION of " + " + ".join(tables)
    subqueries = len(re.findall(r"\(\s*SELECT\b", sql, re.IGNORECASE))
    counts = "count of " if re.match(r"\s*SELECT COUNT\(", sql) else ""
    return f"{counts}{' + '.join(tables)}, {subqueries} subqueries"


_FROM = re.compile(r'\bFROM\s+"?(\w+)"?')


def explain(sql: str, params: Any) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


# -- output ---------------------------------------------------------------------------------------


def table(size: dict[str, Any]) -> str:
    db = size["database"]
    lines = [
        "",
        f"== {db['tickets']:,} tickets ({TENANTS} tenants: the largest {db['largest_tenant_tickets']:,}, a typical one"
        f" {db['typical_tenant_tickets']:,}), {db['messages']:,} messages, database {db['size']};"
        f" seeded in {size['seed_seconds']:.1f} s (+{size['seeded_tickets']:,} tickets) ==",
        f"load: {size['generator']}; {size['connections']} concurrent clients; {size['seconds']:g} s x"
        f" {size['rounds']} round(s), median round; gunicorn {size['workers']} sync workers on"
        f" {len(os.sched_getaffinity(0))} CPUs shared with PostgreSQL and the load generator ('gen cpu', in cores);"
        f" the CPUs were {size['cpu_idle_before']:.0%} idle just before",
        f"{'endpoint':<30} {'req/s':>8} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'gen cpu':>7}"
        f" {'server ms':>9} {'queries':>7}",
    ]
    for row in size["load"]:
        prof = row.get("profile") or {}
        server = f"{prof['ms']:9.1f} {prof['queries']:7d}" if prof else f"{'':9} {'':7}"
        lines.append(
            f"{row['endpoint']:<30} {row['req_s']:8.1f} {row['ratio']:6.3f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}"
            f" {row['errors']:6d} {row['generator_cpu']:7.2f} {server}"
        )
    lines.append(
        "server ms / queries: one request in-process (median of 20), for a typical tenant ([largest]: the largest)"
    )
    lines += [
        "",
        f"single request in-process, median of {PROFILE_REQUESTS}: typical tenant | largest tenant | the largest"
        " tenant's slowest query",
        f"{'endpoint':<26} {'ms':>7} {'sql ms':>7} {'queries':>7} | {'ms':>7} {'sql ms':>7} {'queries':>7} |"
        f" {'ms':>7} {'share':>5}  query",
    ]
    for row in size["profile"]:
        typ, big = row["typical"], row["largest"]
        share = big["slowest_ms"] / big["ms"] if big["ms"] else 0
        lines.append(
            f"{row['endpoint']:<26} {typ['ms']:7.1f} {typ['sql_ms']:7.1f} {typ['queries']:7d} | {big['ms']:7.1f}"
            f" {big['sql_ms']:7.1f} {big['queries']:7d} | {big['slowest_ms']:7.1f} {share:5.0%}"
            f"  {sql_summary(big['slowest_sql'])}"
        )
    return "\n".join(lines)


def load_round(
    load: PythonLoad | WrkLoad,
    servers: dict[str, Server],
    rows: list[Endpoint],
    tenants: Tenants,
    results: dict[str, list[LoadResult]],
    *,
    seconds: float,
    warmup: float,
    label: str,
) -> dict[str, float]:
    """Every endpoint once, into `results`, the bare view again after each API endpoint; returns each
    API endpoint's req/s over the mean of the bare view's just before and just after it."""

    def measure(row: Endpoint) -> LoadResult:
        progress(f"{label}: {row.name}")
        result = load.run(servers[row.server], targets(row, tenants), seconds, warmup)
        drain(servers[row.server])
        results[row.name].append(result)
        if result.errors:
            progress(f"!!! {row.name}: {sum(result.errors.values())} errors {dict(result.errors)}")
        return result

    bare = next(row for row in rows if row.name == BASELINE)
    ratios: dict[str, float] = {}
    before = None
    for row in rows:
        if row.server != "api":
            result = measure(row)
            before = result if row is bare else before
            continue
        before = before or measure(bare)
        rate = measure(row).rate
        after = measure(bare)
        bare_rate = (before.rate + after.rate) / 2
        ratios[row.name] = rate / bare_rate if bare_rate else 0.0
        before = after
    return ratios


def median_result(results: list[LoadResult]) -> dict[str, Any]:
    """The median round by req/s, with the errors of every round."""
    ordered = sorted(results, key=lambda r: r.rate)
    middle = ordered[len(ordered) // 2]
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    return {
        "req_s": round(middle.rate, 1),
        "req_s_rounds": [round(r.rate, 1) for r in results],
        "p50_ms": round(middle.p50_ms, 2),
        "p99_ms": round(middle.p99_ms, 2),
        "requests": middle.requests,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_sample": next((r.error_sample for r in results if r.error_sample), ""),
        "generator_cpu": round(middle.generator_cpu, 2),
    }


# -- the run --------------------------------------------------------------------------------------

BARE_SETTINGS = """from keybuzz.settings import *  # noqa: F403  (the deployed settings, middleware included)

ROOT_URLCONF = "bench_bare_urls"
"""
BARE_URLS = """import json
from pathlib import Path

from django.http import JsonResponse
from django.urls import path

DATA = json.loads(Path(__file__).with_name("bench_body.json").read_bytes())


def bare(request):
    return JsonResponse(DATA)


urlpatterns = [path("bare", bare)]
"""
BARE_WSGI = """from pathlib import Path

BODY = Path(__file__).with_name("bench_body.json").read_bytes()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", help="tickets, comma-separated, growing (default 10000,100000,1000000)")
    parser.add_argument("--seconds", type=float, help="measured seconds per endpoint and round (default 15)")
    parser.add_argument("--rounds", type=int, help="rounds, the median one is reported (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the database (the next run tops it up)")
    parser.add_argument("--quick", action="store_true", help="sizes 10000, 5 s, 1 round: a smoke run")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the largest tenant's slowest queries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # --quick changes the defaults only: `--quick --seconds 2` is a 2-second smoke run.
    defaults = ("10000", 5.0, 1) if args.quick else ("10000,100000,1000000", 15.0, 3)
    args.sizes = args.sizes if args.sizes is not None else defaults[0]
    args.seconds = args.seconds if args.seconds is not None else defaults[1]
    args.rounds = args.rounds if args.rounds is not None else defaults[2]
    try:
        args.size_list = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: integers separated by commas, not {args.sizes!r}")
    if not args.size_list or sorted(args.size_list) != args.size_list or args.size_list[0] < TENANTS * 5:
        parser.error(f"--sizes: growing, each at least {TENANTS * 5}")
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1:
        parser.error("--rounds, --seconds and --connections must be positive")
    return args


def run(args: argparse.Namespace, processes: Processes, tmp: Path, url: str) -> int:
    env = bench_env(url, tmp)
    try:
        ensure_database(url)
    except Exception as exc:
        raise SetupError(f"cannot create the database {url}: {' '.join(str(exc).split())}") from None
    progress("migrating")
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if migrate.returncode:
        lines = (migrate.stderr or migrate.stdout).strip().splitlines()
        raise SetupError(f"manage.py migrate failed: {lines[-1] if lines else migrate.returncode}")
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password

    password_hash = make_password(PASSWORD)  # once: every owner shares it
    wrk = shutil.which("wrk")
    if args.load_generator == "wrk" and not wrk:
        raise SetupError("--load-generator wrk: wrk is not installed")
    load: PythonLoad | WrkLoad = (
        WrkLoad(args.connections, wrk, processes, tmp)
        if wrk and args.load_generator != "python"
        else PythonLoad(args.connections)
    )
    warmup = 1.0 if args.seconds < 10 else 2.0
    report: dict[str, Any] = {
        "generator": load.describe(),
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "cpus": len(os.sched_getaffinity(0)),
        "sizes": [],
    }
    servers: dict[str, Server] = {}
    failed = False
    for size in args.size_list:
        progress(f"seeding to {size:,} tickets")
        try:
            added, seed_seconds = seed(url, size, password_hash)
        except Exception as exc:
            raise SetupError(f"seeding failed: {exc}".replace("\n", " ")) from None
        progress(f"seeded {added:,} tickets in {seed_seconds:.1f} s")
        if not servers:
            progress("starting gunicorn (API)")
            servers["api"] = start_gunicorn(processes, "api", env, tmp, "/health")
        tenants = tenants_prepare(servers["api"])
        if "bare" not in servers:
            # The bare servers answer with the bytes of a typical tenant's first list page.
            from django.test import Client

            page = Client(headers={"Authorization": f"Bearer {tenants.tokens[1]}"}).get("/api/v1/tickets/")
            if page.status_code != 200:
                raise SetupError(f"GET /api/v1/tickets/ in-process answered {page.status_code}")
            (tmp / "bench_body.json").write_bytes(page.content)
            (tmp / "bench_bare_settings.py").write_text(BARE_SETTINGS)
            (tmp / "bench_bare_urls.py").write_text(BARE_URLS)
            (tmp / "bench_bare_wsgi.py").write_text(BARE_WSGI)
            bare_env = {**env, "PYTHONPATH": str(tmp), "DJANGO_SETTINGS_MODULE": "bench_bare_settings"}
            progress(f"starting the bare servers ({len(page.content):,}-byte answer)")
            servers["bare"] = start_gunicorn(processes, "bare", bare_env, tmp, "/bare")
            servers["floor"] = start_gunicorn(
                processes, "floor", bare_env, tmp, "/bare", app="bench_bare_wsgi:application"
            )
        idle = cpu_idle()
        if idle < 0.8:
            progress(f"!!! the machine is busy before the load ({idle:.0%} idle): other work competes for the CPUs")
        rows = endpoints()
        results: dict[str, list[LoadResult]] = {row.name: [] for row in rows}
        # Per API endpoint and round: its req/s over the mean of the bare view's just before and just after.
        paired: dict[str, list[float]] = {row.name: [] for row in rows}
        for round_ in range(args.rounds):
            ratios = load_round(
                load, servers, rows, tenants, results, seconds=args.seconds, warmup=warmup,
                label=f"{size:,} tickets, round {round_ + 1}/{args.rounds}",
            )  # fmt: skip
            for name, ratio in ratios.items():
                paired[name].append(ratio)
        progress("timing single requests in-process")
        profiles: list[dict[str, Any]] = [
            {
                "endpoint": row.name,
                "path": row.path,
                "typical": asdict(profile(row, tenants, 1)),
                "largest": asdict(profile(row, tenants, 0)),
            }
            for row in rows
            if row.profile
        ]
        by_path = {p["path"]: p for p in profiles}
        baseline = median_result(results[BASELINE])["req_s"]
        load_rows = []
        for row in rows:
            measured = median_result(results[row.name])
            prof = by_path.get(row.path)
            load_rows.append(
                {
                    "endpoint": row.name,
                    "path": row.path,
                    "scope": row.scope,
                    **measured,
                    "ratio": round(statistics.median(paired[row.name]), 4)
                    if paired[row.name]
                    else (round(measured["req_s"] / baseline, 4) if baseline else 0.0),
                    "ratio_rounds": [round(r, 4) for r in paired[row.name]],
                    "profile": (prof["largest"] if row.scope == "largest" else prof["typical"]) if prof else None,
                }
            )
        size_report = {
            "database": database_figures(url),
            "seeded_tickets": added,
            "seed_seconds": round(seed_seconds, 2),
            "workers": servers["api"].workers(),
            "cpu_idle_before": round(idle, 3),
            "generator": load.describe(),
            "connections": args.connections,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "load": load_rows,
            "profile": profiles,
        }
        report["sizes"].append(size_report)
        if not args.json:
            print(table(size_report), flush=True)
        errors = [r for r in load_rows if r["errors"]]
        for r in errors:
            failed = True
            print(
                f"!!! ERRORS on {r['endpoint']}: {r['errors']} failed requests {r['error_kinds']};"
                f" e.g. {r['error_sample']}",
                flush=True,
            )
        if args.explain and not args.json:
            for prof in profiles:
                slowest = prof["largest"]
                print(f"\n-- {prof['endpoint']}, largest tenant, slowest query:\n{slowest['slowest_sql']}")
                if slowest["slowest_sql"]:
                    print(explain(slowest["slowest_sql"], slowest["slowest_params"]))
    if args.json:
        print(json.dumps(report, default=str))  # the queries' parameters: UUIDs, datetimes
    return 2 if failed else 0


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    args = parse_args()
    url = os.environ.get("BENCH_API_DATABASE_URL", DEFAULT_URL)
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="keybuzz-api-load-"))

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same clean-up as Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    status = 1
    try:
        status = run(args, processes, tmp, url)
    except SetupError as exc:
        print(f"api_load: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("api_load: interrupted", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        processes.stop_all()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if not args.keep:
            with contextlib.suppress(Exception):
                drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
