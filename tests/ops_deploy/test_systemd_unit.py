"""deploy/keybuzz-backend.service: `systemd-analyze verify` accepts it (no warning at all), its
hardening scores "OK" in `systemd-analyze security`, and its ExecStart really serves /health and
tells systemd it is ready (Type=notify) through a NOTIFY_SOCKET, as systemd would see it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.net import free_port
from tests.ops_deploy.conftest import APP_DIR, ROOT, find_tool, render

UNIT = "keybuzz-backend.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture
def unit_text(deploy_file) -> str:
    return deploy_file(UNIT)


@pytest.fixture
def staged_unit(tmp_path, unit_text) -> Path:
    """The unit with /opt/keybuzz/keybuzz-backend moved under tmp_path, and the files it names
    (gunicorn, the env file, the gunicorn config) present there, as after DEPLOY.md's steps 2-5."""
    app = tmp_path / "app"
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / "deploy").mkdir()
    gunicorn = app / ".venv" / "bin" / "gunicorn"
    gunicorn.write_text("#!/bin/sh\nexit 0\n")
    gunicorn.chmod(0o755)
    (app / ".env.production").write_text("DEBUG=false\n")
    (app / "deploy" / "gunicorn.conf.py").write_text((ROOT / "deploy" / "gunicorn.conf.py").read_text())
    unit = tmp_path / UNIT
    unit.write_text(render(unit_text, {APP_DIR: str(app)}))
    return unit


def verify(unit: Path) -> list[str]:
    """`systemd-analyze verify`'s complaints about this unit (it exits 0 on mere warnings, such
    as an unknown key, so its output is what counts)."""
    done = subprocess.run(
        [find_tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = (done.stdout + done.stderr).splitlines()
    mine = [line for line in output if unit.name in line or str(unit.parent) in line]
    if done.returncode != 0:
        mine.append(f"exit code {done.returncode}")
    return mine


def test_systemd_analyze_verify_accepts_the_unit(staged_unit):
    assert verify(staged_unit) == []


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        ("Restart=on-failure", "Restart=sometimes"),
        ("RestartSec=10", "RestartSec=ten"),
        ("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
        ("StartLimitIntervalSec=300", "[Service]\nStartLimitIntervalSec=300"),
    ],
)
def test_verify_catches_a_broken_unit(staged_unit, line, replacement):
    """The check above is only worth something if a typo makes it fail."""
    text = staged_unit.read_text()
    assert line in text
    staged_unit.write_text(text.replace(line, replacement, 1))
    assert verify(staged_unit) != []


def test_verify_catches_a_missing_gunicorn(staged_unit, tmp_path):
    (tmp_path / "app" / ".venv" / "bin" / "gunicorn").unlink()
    assert any("not executable" in line or "exit code" in line for line in verify(staged_unit))


def test_hardening_scores_ok(staged_unit):
    done = subprocess.run(
        [find_tool("systemd-analyze"), "security", "--offline=true", str(staged_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    overall = next(line for line in done.stdout.splitlines() if "Overall exposure level" in line)
    score = float(overall.split(":")[1].split()[0])
    assert score <= 2.5, overall


def test_the_unit_says_what_the_runbook_needs(unit_text):
    unit = parse_unit(unit_text)
    service = unit["Service"]
    assert service["EnvironmentFile"] == [f"{APP_DIR}/.env.production"]
    assert service["WorkingDirectory"] == [APP_DIR]
    assert service["ExecStart"] == [f"{APP_DIR}/.venv/bin/gunicorn --config {APP_DIR}/deploy/gunicorn.conf.py"]
    assert service["User"] == ["keybuzz"] and service["Group"] == ["keybuzz"]
    assert service["Restart"] == ["on-failure"] and int(service["RestartSec"][0]) > 0
    assert service["Type"] == ["notify"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a configuration error waits for the operator
    # gunicorn's graceful timeout must fit in systemd's stop timeout.
    assert int(service["TimeoutStopSec"][0]) > 30
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "StartLimitBurst" in unit["Unit"]


def _wait_ready(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    received = ""
    while time.monotonic() < deadline:
        received += sock.recv(4096).decode()
        if "READY=1" in received:
            return received
    return received


def test_exec_start_serves_health_and_notifies_systemd(unit_text, tmp_path):
    """The unit's ExecStart (with the app directory being this checkout), in the unit's
    WorkingDirectory, with a notify socket like systemd's: READY=1, then /health answers, then
    SIGTERM (what `systemctl stop` sends with KillMode=mixed) stops it cleanly."""
    service = parse_unit(render(unit_text, {APP_DIR: str(ROOT)}))["Service"]
    command = service["ExecStart"][0].split()
    port = free_port()
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        # What EnvironmentFile= would load (a development configuration here), and the port.
        "KEYBUZZ_ENV_FILE": "none",
        "DEBUG": "true",
        "KEYBUZZ_VAR_DIR": str(tmp_path / "var"),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "NOTIFY_SOCKET": str(notify_path),
    }
    log = (tmp_path / "journal.log").open("w")
    process = subprocess.Popen(
        command, cwd=service["WorkingDirectory"][0], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        received = _wait_ready(notify, 30)
        assert "READY=1" in received, (tmp_path / "journal.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=40)
        notify.close()
        log.close()
    assert code == 0
    journal = (tmp_path / "journal.log").read_text()
    assert "gunicorn.access" in journal and '"GET /health HTTP/1.1" 200' in journal
    assert "Shutting down: Master" in journal


def test_exec_start_stops_with_exit_2_and_one_line_on_a_configuration_error(unit_text, tmp_path):
    service = parse_unit(render(unit_text, {APP_DIR: str(ROOT)}))["Service"]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KEYBUZZ_ENV_FILE": "none",
        "DEBUG": "false",
        "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
        **{k: v for k, v in os.environ.items() if k == "LANG"},
    }
    done = subprocess.run(
        service["ExecStart"][0].split(),
        cwd=service["WorkingDirectory"][0],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "Configuration error" in line]
    assert errors == [
        "Configuration error: DJANGO_SECRET_KEY is not set (required when DEBUG is off); see .env.production.example"
    ]
