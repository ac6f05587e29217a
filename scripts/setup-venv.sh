# Sourced by run.sh and test.sh: creates .venv with Python 3.11 and installs the pinned
# requirements, again only when a requirements file changed.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
REQ_FILE=${REQ_FILE:-requirements-dev.txt}
if [ ! -x .venv/bin/python ]; then
  echo "==> Creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -c1-16)-$(basename "$REQ_FILE" .txt)
if [ ! -f "$stamp" ]; then
  echo "==> Installing $REQ_FILE"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQ_FILE"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
