"""Start-up guard: production mode never falls back to a development default silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILLED = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-signing-key-with-enough-entropy-0123456789",
    "JWT_SECRET": "jwt-secret-for-the-settings-test-0123456789",
    "KEYBUZZ_SUPERADMIN_PASSWORD": "superadmin-password-for-test",
    "VAULT_TOKEN": "s.vault-token-for-test",
    "KEYBUZZ_AI_API_KEY": "ai-key-for-test",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "VAULT_", "JWT_", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION = {
    "KEYBUZZ_ENV_FILE": "none",
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": FILLED["DJANGO_SECRET_KEY"],
    "DATABASE_URL": "postgresql://kb:pw@127.0.0.1:5432/kb",
    "JWT_SECRET": FILLED["JWT_SECRET"],
    "VAULT_ADDR": "http://127.0.0.1:8200",
    "VAULT_TOKEN": FILLED["VAULT_TOKEN"],
}


@pytest.mark.parametrize("missing", ["DATABASE_URL", "JWT_SECRET", "VAULT_ADDR", "VAULT_TOKEN", "DJANGO_SECRET_KEY"])
def test_production_mode_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = manage("check", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ")
    assert missing in lines[0]


def test_production_mode_starts_when_everything_is_set():
    result = manage("check", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_approle_replaces_the_vault_token():
    env = {k: v for k, v in PRODUCTION.items() if k != "VAULT_TOKEN"}
    env |= {"VAULT_ROLE_ID": "role", "VAULT_SECRET_ID": "secret-id"}
    assert manage("check", env=env).returncode == 0


def test_env_file_is_read_and_implies_production(tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text("DJANGO_SECRET_KEY=x\n")  # DEBUG is not set: the env file means production
    result = manage("check", env={"KEYBUZZ_ENV_FILE": str(env_file)})
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_missing_env_file_is_named(tmp_path):
    result = manage("check", env={"KEYBUZZ_ENV_FILE": str(tmp_path / "nope.env")})
    assert result.returncode == 2
    assert "nope.env" in result.stderr


def test_filled_production_example_passes_deploy_checks(tmp_path):
    text = (ROOT / ".env.production.example").read_text()
    for key, value in FILLED.items():
        text = text.replace(f"{key}=***", f"{key}={value}")
    placeholders = [line for line in text.splitlines() if line.endswith("=***") or ":***@" in line]
    assert placeholders == ["DATABASE_URL=postgresql://kb_backend:***@10.0.0.10:5432/keybuzz_backend"]
    env_file = tmp_path / ".env.production"
    env_file.write_text(text)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={"KEYBUZZ_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_defaults_apply_when_nothing_is_configured(tmp_path):
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.SECRETS_BACKEND)",
        env={"KEYBUZZ_ENV_FILE": "none", "KEYBUZZ_VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3", "local"]
