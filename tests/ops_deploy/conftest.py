"""Helpers for the deploy/ checks: find the host tools (systemd-analyze, nginx, logrotate, …),
render a deploy file with its absolute paths moved into a temporary root, free ports.

Locally a missing tool skips its test; `scripts/check-deploy.sh` (CI) installs them and sets
KEYBUZZ_DEPLOY_TOOLS_REQUIRED=1, so there a missing tool fails instead."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
APP_DIR = "/opt/keybuzz/keybuzz-backend"


def find_tool(name: str) -> str:
    """The tool's path, or skip (fail under KEYBUZZ_DEPLOY_TOOLS_REQUIRED=1)."""
    extra = os.environ.get("KEYBUZZ_DEPLOY_TOOLS_PATH", "")
    found = shutil.which(
        name, path=os.pathsep.join(p for p in (extra, os.environ.get("PATH", ""), "/usr/sbin:/sbin") if p)
    )
    if found:
        return found
    message = f"{name} is not installed (scripts/check-deploy.sh installs it)"
    if os.environ.get("KEYBUZZ_DEPLOY_TOOLS_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def render(text: str, replacements: dict[str, str]) -> str:
    """Longest keys first, so /opt/keybuzz/keybuzz-backend/var wins over /opt/keybuzz/keybuzz-backend."""
    for old in sorted(replacements, key=len, reverse=True):
        text = text.replace(old, replacements[old])
    return text


@pytest.fixture
def deploy_file():
    return lambda name: (DEPLOY / name).read_text()
