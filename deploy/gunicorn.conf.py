"""gunicorn settings for the KeyBuzz backend (deploy/keybuzz-backend.service runs
`gunicorn --config deploy/gunicorn.conf.py`).

nginx (deploy/nginx-keybuzz.conf) terminates TLS and proxies to 127.0.0.1:4000. Logs go to
stdout/stderr, which systemd hands to journald, in the same format as the application's
(LOG_FORMAT=line|json, keybuzz/logging.py). Every value can be overridden from the environment
or from `.env.production` (GUNICORN_*), which is read here the same way the settings read it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:  # gunicorn loads this file before it puts chdir on sys.path
    sys.path.insert(0, str(BASE_DIR))

from keybuzz.logging import gunicorn_logconfig  # noqa: E402

_env_file = os.environ.get("KEYBUZZ_ENV_FILE") or str(BASE_DIR / ".env.production")
if _env_file != "none" and Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)  # variables already in the environment win


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (cgroups, taskset)
    except AttributeError:
        return os.cpu_count() or 1


wsgi_app = "keybuzz.wsgi:application"
chdir = str(BASE_DIR)
# Loopback only: nginx is the public face (TLS, http→https). The runbook's
# `curl http://localhost:4000/health` is answered here.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:4000")]

# Sync workers: requests are short, nginx buffers slow clients. (2 x CPUs) + 1, capped so the
# workers' PostgreSQL connections stay well under max_connections; GUNICORN_WORKERS overrides.
workers = int(os.environ.get("GUNICORN_WORKERS") or min(2 * _cpus() + 1, 12))
threads = int(os.environ.get("GUNICORN_THREADS") or 1)
# The OAuth callback calls Amazon's token endpoint (10 s timeout, 2 retries): leave it room.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 60)
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)  # < the unit's TimeoutStopSec
keepalive = 5  # nginx keeps upstream connections open (keepalive in the upstream block)
# Recycle workers now and then, so a slow leak never grows for weeks.
# Recycling workers every N requests guards against leaks but costs a re-import of Django each
# time: at 2,000 it restarted workers 40 times in 4 minutes of load (the bare view ran 1.8x slower).
# Off by default (KeyBuzz has no known leak); GUNICORN_MAX_REQUESTS turns it back on.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 0)
max_requests_jitter = max_requests // 10
# Heartbeat files in memory, not on a disk that may stall.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (gunicorn's advice)

# nginx on the same host sets X-Forwarded-For/-Proto; trust them from loopback only.
forwarded_allow_ips = "127.0.0.1,::1"
proxy_allow_ips = "127.0.0.1,::1"

# Logs: stdout/stderr → journald. The access line has the path without its query string, so the
# OAuth callback's one-time code and state never reach a log; then the peer (nginx) and the client
# (X-Forwarded-For, "-" when the request did not come through nginx).
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
access_log_format = '%(h)s %({x-forwarded-for}i)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
logconfig_dict = gunicorn_logconfig(level=loglevel, fmt=os.environ.get("LOG_FORMAT", "line"))
capture_output = False
proc_name = "keybuzz-backend"
# systemd manages the process (reload: `systemctl reload`); gunicorn's control socket would live in
# $HOME, which the unit makes read-only.
control_socket_disable = True


def on_starting(server) -> None:
    """Check the settings once, in the master, before any worker boots: a missing variable stops
    the service with the same one line as manage.py, and exit code 2 (RestartPreventExitStatus)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keybuzz.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 (evaluating the settings is the check)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.stderr.flush()
        os._exit(2)
