#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (extra arguments go to pytest).
# SQLite by default; with DATABASE_URL=postgresql://… the suite runs on PostgreSQL, including the
# tests that need row locks and real concurrency.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-venv.sh
# Tests never read a local .env.production: they describe their own configuration.
export KEYBUZZ_ENV_FILE=none
exec .venv/bin/python -m pytest "$@"
