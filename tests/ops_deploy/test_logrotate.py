"""deploy/keybuzz-logrotate (/etc/logrotate.d/keybuzz-backend): `logrotate -d` accepts it, and a
forced rotation really rotates both cron logs and recreates them (mode 0640). The log paths are
moved into a temporary directory and the keybuzz user replaced by the current one."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import pytest

from tests.ops_deploy.conftest import find_tool, render

LOGS = (
    "/var/log/amazon-polling.log",
    "/var/log/keybuzz-replies.log",
    "/var/log/keybuzz-orders.log",
    "/var/log/keybuzz-housekeeping.log",
)


@pytest.fixture
def staged(tmp_path, deploy_file):
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    logs = tmp_path / "log"
    logs.mkdir()
    logs.chmod(0o755)
    text = render(
        deploy_file("keybuzz-logrotate"),
        {
            "/var/log/": f"{logs}/",
            "create 0640 keybuzz keybuzz": f"create 0640 {user} {group}",
            "su root adm": f"su {user} {group}",
        },
    )
    conf = tmp_path / "keybuzz-backend"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf, logs


def logrotate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool("logrotate"), *args], capture_output=True, text=True, timeout=60)


def test_the_file_names_the_cron_logs(deploy_file):
    text = deploy_file("keybuzz-logrotate")
    assert text.split("{")[0].split("\n")[-1].split() == list(LOGS)
    for directive in ("daily", "rotate 14", "compress", "missingok", "notifempty", "create 0640 keybuzz keybuzz"):
        assert f"    {directive}\n" in text


def test_logrotate_debug_accepts_the_file(staged, tmp_path):
    conf, logs = staged
    for name in ("amazon-polling.log", "keybuzz-replies.log", "keybuzz-orders.log", "keybuzz-housekeeping.log"):
        (logs / name).write_text("a line\n")
    done = logrotate("-d", "-s", str(tmp_path / "state"), str(conf))
    assert done.returncode == 0, done.stderr
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if (line.lower().startswith(("error", "warning")) or "unknown" in line.lower())
        and "in debug mode does nothing" not in line
    ]
    assert problems == []
    assert "rotating pattern" in done.stderr


def test_forced_rotation_rotates_and_recreates(staged, tmp_path):
    conf, logs = staged
    for name in ("amazon-polling.log", "keybuzz-replies.log", "keybuzz-orders.log", "keybuzz-housekeeping.log"):
        (logs / name).write_text("[Amazon Poller] Summary: connections=1\n")
    done = logrotate("-f", "-s", str(tmp_path / "state"), str(conf))
    assert done.returncode == 0, done.stderr
    for name in ("amazon-polling.log", "keybuzz-replies.log", "keybuzz-orders.log", "keybuzz-housekeeping.log"):
        assert (logs / f"{name}.1").read_text().startswith("[Amazon Poller]")  # delaycompress: .1 stays plain
        fresh = logs / name
        assert fresh.read_text() == ""
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
