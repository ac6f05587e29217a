#!/usr/bin/env bash
# CI, after the tests: the deploy/ files and docs/DEPLOY.md, checked for real.
#  1. tests/ops_deploy: systemd-analyze verify/security on the unit, its ExecStart with a notify
#     socket, the cron lines parsed and flock tried, logrotate -d and a forced rotation, nginx -t
#     and the snippet served; DEPLOY.md's blocks and env table linted.
#  2. tests.ops_deploy.doc_runner: every command block of docs/DEPLOY.md run in a sandbox (a temp
#     root, a temp PostgreSQL database, an OpenBao dev server, stand-ins for systemctl & co).
# Needs .venv (scripts/setup-venv.sh) and PostgreSQL at DATABASE_URL (default 127.0.0.1:5432);
# installs what is missing: systemd-analyze, logrotate, flock, openssl, curl, psql, and nginx,
# which is unpacked into a cache directory instead of installed (installing it would start a
# server on port 80). Idempotent: nothing is fetched when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v flock >/dev/null || missing+=(util-linux)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v python3.11 >/dev/null || missing+=(python3.11-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> Installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

nginx_dir=${KEYBUZZ_CI_CACHE:-/var/cache/keybuzz-ci}/nginx
if command -v nginx >/dev/null; then
  nginx_path=$(dirname "$(command -v nginx)")
else
  nginx_path=$nginx_dir/usr/sbin
  if [ ! -x "$nginx_path/nginx" ]; then
    echo "==> Unpacking Debian's nginx into $nginx_dir"
    mkdir -p "$nginx_dir/debs"
    (cd "$nginx_dir/debs" && { apt-get download nginx nginx-common 2>/dev/null \
       || { apt-get update -qq && apt_updated=1 && apt-get download nginx nginx-common; }; })
    for deb in "$nginx_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$nginx_dir"; done
  fi
fi

export KEYBUZZ_DEPLOY_TOOLS_PATH=$nginx_path:/usr/sbin:/sbin
export KEYBUZZ_DEPLOY_TOOLS_REQUIRED=1   # a missing tool fails the check instead of skipping it
export KEYBUZZ_ENV_FILE=none
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/keybuzz}

echo "==> deploy/ files: systemd unit, gunicorn, cron, logrotate, nginx"
.venv/bin/python -m pytest tests/ops_deploy -q -p no:cacheprovider
echo "==> docs/DEPLOY.md: every command block, in a sandbox"
.venv/bin/python -m tests.ops_deploy.doc_runner
echo "==> deploy check done in $(( $(date +%s) - started ))s"
