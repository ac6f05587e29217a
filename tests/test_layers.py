"""The one-way layers contract (pyproject.toml, `lint-imports` in CI) holds on this tree, and fails the
build when someone adds an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APPS = ("keybuzz", "tickets", "marketplaces", "operations")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for app in APPS:
        shutil.copytree(REPO / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_the_layers(tree):
    done = lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("tickets/models.py", "from marketplaces.models import MarketplaceConnection"),
        ("keybuzz/services.py", "import tickets.selectors"),
        ("marketplaces/selectors.py", "from operations.selectors import ops_figures"),
    ],
)
def test_an_upward_import_breaks_the_build(tree, module, upward):
    path = tree / module
    path.write_text(path.read_text() + f"\n\ndef _sneaky() -> None:\n    {upward}  # noqa\n")
    done = lint(tree)
    assert done.returncode != 0
    lower = module.split("/")[0]
    assert f"{lower} is not allowed to import" in done.stdout
