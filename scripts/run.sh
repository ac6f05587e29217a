#!/usr/bin/env bash
# Sets everything up and serves the API on http://127.0.0.1:4000 with the embedded defaults:
# SQLite in var/, the local encrypted secret store, the mock Amazon, a demo tenant and the superadmin.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ_FILE=requirements.txt source scripts/setup-venv.sh
export KEYBUZZ_ENV_FILE=${KEYBUZZ_ENV_FILE:-none}
export DEBUG=${DEBUG:-true}
export AMAZON_USE_MOCK=${AMAZON_USE_MOCK:-true}
export KEYBUZZ_SUPERADMIN_PASSWORD=${KEYBUZZ_SUPERADMIN_PASSWORD:-superadmin-dev-password}
PY=.venv/bin/python
$PY manage.py migrate --no-input -v0
tenant_id=$($PY manage.py create_tenant demo --name "Demo Store" --admin-username demo --admin-password demo-password)
$PY manage.py ensure_superadmin
echo "==> Demo tenant $tenant_id: log in as demo / demo-password (API), superadmin / \$KEYBUZZ_SUPERADMIN_PASSWORD (admin)"
echo "==> http://127.0.0.1:${PORT:-4000}/health  /api/docs/  /admin/"
exec $PY manage.py runserver "127.0.0.1:${PORT:-4000}"
