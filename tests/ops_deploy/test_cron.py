"""deploy/keybuzz-cron (/etc/cron.d/keybuzz-backend): the lines parse (5 time fields in range, a
user, a command), both jobs fire every 5 minutes as the keybuzz user from the app directory with
the venv's python, the commands and options exist, and `flock -n` really keeps two runs of a job
from overlapping on one host (run with a stand-in python, as cron would run the line)."""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest
from django.core.management import get_commands, load_command_class

from tests.ops_deploy.conftest import APP_DIR, render
from tests.ops_deploy.crontab import CronError, parse_cron_d, parse_field

EVERY_5_MINUTES = (
    frozenset(range(0, 60, 5)),
    frozenset(range(24)),
    frozenset(range(1, 32)),
    frozenset(range(1, 13)),
    frozenset(range(8)),
)


@pytest.fixture
def cron(deploy_file):
    return parse_cron_d(deploy_file("keybuzz-cron"))


DAILY_AT_4_17 = (
    frozenset({17}),
    frozenset({4}),
    frozenset(range(1, 32)),
    frozenset(range(1, 13)),
    frozenset(range(8)),
)
JOBS = [
    ("poll_amazon", "/var/log/amazon-polling.log", "keybuzz-poll-amazon", ["--once"]),
    ("send_replies", "/var/log/keybuzz-replies.log", "keybuzz-send-replies", ["--once"]),
    ("sync_orders", "/var/log/keybuzz-orders.log", "keybuzz-sync-orders", ["--once"]),
    ("flushexpiredtokens", "/var/log/keybuzz-housekeeping.log", "keybuzz-housekeeping", []),
]


def job_for(cron, command_name: str):
    return next(job for job in cron.jobs if f"manage.py {command_name}" in job.command)


def test_the_workers_every_five_minutes_and_housekeeping_daily(cron):
    assert len(cron.jobs) == 4
    assert job_for(cron, "poll_amazon").schedule == EVERY_5_MINUTES
    assert job_for(cron, "send_replies").schedule == EVERY_5_MINUTES
    assert job_for(cron, "sync_orders").schedule == EVERY_5_MINUTES
    assert job_for(cron, "flushexpiredtokens").schedule == DAILY_AT_4_17
    assert {job.user for job in cron.jobs} == {"keybuzz"}


def test_environment_of_the_jobs(cron):
    assert cron.env["SHELL"] == "/bin/sh"
    assert "/usr/bin" in cron.env["PATH"].split(":")  # flock
    assert cron.env["MAILTO"] == ""  # the output goes to the log files, not to mail


@pytest.mark.parametrize(("name", "log", "lock", "options"), JOBS)
def test_each_job_runs_its_command_once_under_a_lock_appending_to_its_log(cron, name, log, lock, options):
    words = shlex.split(job_for(cron, name).command)
    assert words[:3] == ["cd", APP_DIR, "&&"]
    assert words[3:6] == ["flock", "-n", f"/run/lock/{lock}.lock"]
    assert words[6:9] == [".venv/bin/python", "manage.py", name]
    assert words[9:] == [*options, ">>", log, "2>&1"]


@pytest.mark.parametrize("name", [name for name, *_ in JOBS])
def test_the_commands_and_options_exist(cron, name):
    words = shlex.split(job_for(cron, name).command)
    args = words[words.index(name) + 1 : words.index(">>")]
    app = get_commands()[name]
    command = load_command_class(app, name)
    command.create_parser("manage.py", name).parse_args(args)  # exits on an unknown option


def test_the_jobs_use_different_locks(cron):
    locks = {shlex.split(job.command)[5] for job in cron.jobs}
    assert len(locks) == len(JOBS)


@pytest.mark.parametrize(
    ("text", "low", "high", "expected"),
    [
        ("*/5", 0, 59, set(range(0, 60, 5))),
        ("1-10/3", 0, 59, {1, 4, 7, 10}),
        ("1,2,30-31", 1, 31, {1, 2, 30, 31}),
        ("*", 0, 7, set(range(8))),
    ],
)
def test_field_parser(text, low, high, expected):
    assert parse_field(text, low, high) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "*/0 * * * * keybuzz true\n",
        "60 * * * * keybuzz true\n",
        "* 24 * * * keybuzz true\n",
        "* * 0 * * keybuzz true\n",
        "* * * 13 * keybuzz true\n",
        "* * * * 8 keybuzz true\n",
        "5-1 * * * * keybuzz true\n",
        "5/2 * * * * keybuzz true\n",
        "* * * jan-mar * keybuzz true\n",
        "*/5 * * * * keybuzz\n",
        "*/5 * * * keybuzz true\n",
        "*/5 * * * * Key.Buzz true\n",
        "*/5 * * * * keybuzz date +%s\n",
        "@every5 keybuzz true\n",
        "*/5 * * * * keybuzz true",
    ],
)
def test_parser_refuses_what_cron_would_ignore_or_misread(bad):
    with pytest.raises(CronError):
        parse_cron_d(bad)


def test_names_and_escaped_percent_are_fine():
    cron = parse_cron_d("0 3 * jan sun root date +\\%s\n@daily root true\n")
    assert cron.jobs[0].schedule[3] == {1} and cron.jobs[0].schedule[4] == {0}
    assert cron.jobs[1].schedule == "@daily"


def test_flock_keeps_two_runs_of_the_poller_apart(cron, tmp_path):
    """Run the poller's cron line as cron does (`/bin/sh -c`, the file's environment only), with the
    app directory's python replaced by a stand-in that takes 2 seconds: a second run started
    meanwhile exits at once without running; once the first is done, the next one runs."""
    app = tmp_path / "app"
    (app / ".venv" / "bin").mkdir(parents=True)
    runs = tmp_path / "runs.txt"
    python = app / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "start $*" >> {runs}\nsleep 2\necho "end $*" >> {runs}\n')
    python.chmod(0o755)
    (tmp_path / "lock").mkdir()
    (tmp_path / "log").mkdir()
    command = render(
        job_for(cron, "poll_amazon").command,
        {APP_DIR: str(app), "/run/lock/": f"{tmp_path}/lock/", "/var/log/": f"{tmp_path}/log/"},
    )

    def run() -> subprocess.Popen:
        return subprocess.Popen(["/bin/sh", "-c", command], env=dict(cron.env), cwd="/")

    first = run()
    time.sleep(0.5)
    second = run()
    assert second.wait(timeout=5) == 1  # flock -n: the lock is taken, nothing runs
    assert first.wait(timeout=10) == 0
    assert runs.read_text().splitlines() == ["start manage.py poll_amazon --once", "end manage.py poll_amazon --once"]
    assert run().wait(timeout=10) == 0
    assert len(runs.read_text().splitlines()) == 4
