"""deploy/gunicorn.conf.py as gunicorn itself reads it (`--print-config`), from another directory
as systemd starts it: loopback port 4000, workers from the CPU count, timeouts, trusted proxy,
logs to stdout/stderr in the application's format, overrides from the environment and from
.env.production."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

from tests.net import free_port
from tests.ops_deploy.conftest import ROOT

CONF = ROOT / "deploy" / "gunicorn.conf.py"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"


def printed_config(tmp_path, **env: str) -> dict[str, str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KEYBUZZ_ENV_FILE": "none",
        "KEYBUZZ_VAR_DIR": str(tmp_path),
        **env,
    }
    done = subprocess.run(
        [str(GUNICORN), "--config", str(CONF), "--print-config"],
        cwd=tmp_path,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    settings = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def test_defaults_for_systemd_behind_nginx(tmp_path):
    conf = printed_config(tmp_path)
    cpus = len(os.sched_getaffinity(0))
    assert conf["bind"] == "['127.0.0.1:4000']"
    assert conf["wsgi_app"] == "keybuzz.wsgi:application" and conf["chdir"] == str(ROOT)
    assert int(conf["workers"]) == min(2 * cpus + 1, 12)
    assert (conf["timeout"], conf["graceful_timeout"]) == ("60", "30")
    assert conf["max_requests"] == "0"  # workers are not recycled: each restart re-imports Django under load
    assert conf["forwarded_allow_ips"] == "['127.0.0.1', '::1']"
    assert (conf["accesslog"], conf["errorlog"]) == ("-", "-")
    assert "%(U)s" in conf["access_log_format"] and "%(r)s" not in conf["access_log_format"]  # no query strings
    assert conf["control_socket_disable"] == "True"


def test_environment_overrides(tmp_path):
    conf = printed_config(
        tmp_path,
        GUNICORN_WORKERS="3",
        GUNICORN_BIND="127.0.0.1:4100",
        GUNICORN_TIMEOUT="90",
        GUNICORN_MAX_REQUESTS="5000",
        LOG_LEVEL="WARNING",
    )
    assert (conf["workers"], conf["bind"], conf["timeout"], conf["loglevel"]) == (
        "3",
        "['127.0.0.1:4100']",
        "90",
        "warning",
    )
    assert (conf["max_requests"], conf["max_requests_jitter"]) == ("5000", "500")


def test_env_file_overrides_like_the_settings(tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text("DEBUG=true\nGUNICORN_WORKERS=7\nLOG_FORMAT=json\n")
    conf = printed_config(tmp_path, KEYBUZZ_ENV_FILE=str(env_file), KEYBUZZ_VAR_DIR=str(tmp_path))
    assert conf["workers"] == "7"
    assert "JsonFormatter" in conf["logconfig_dict"]


def test_access_and_error_lines_in_json(tmp_path):
    """LOG_FORMAT=json: gunicorn's own lines are JSON too, and the access line has no query string."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KEYBUZZ_ENV_FILE": "none",
        "DEBUG": "true",
        "KEYBUZZ_VAR_DIR": str(tmp_path),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "LOG_FORMAT": "json",
    }
    out = (tmp_path / "out.log").open("w")
    process = subprocess.Popen(
        [str(GUNICORN), "--config", str(CONF)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/health?spapi_oauth_code=ANsecretCode"
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
        out.close()
    text = (tmp_path / "out.log").read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    assert access and '"GET /health HTTP/1.1" 200' in access[0]["message"]
    assert "ANsecretCode" not in text
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
