"""Liveness and readiness: is the database answering, is the secret store usable."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection

import keybuzz
from keybuzz.secrets import SecretStoreError, get_secret_store

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _secrets() -> None:
    get_secret_store().ping()


CHECKS = {"database": _database, "secrets": _secrets}


def health_report() -> tuple[bool, dict]:
    """Runs every check; a failed one is named with a reason that holds no secret."""
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
            checks[name] = "ok"
        except SecretStoreError as exc:
            checks[name] = f"error: {exc}"
        except Exception as exc:  # any failure of a dependency makes us unhealthy, never a 500
            checks[name] = f"error: {type(exc).__name__}"
            logger.warning("Health check %s failed: %s", name, type(exc).__name__)
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "checks": checks,
        "version": settings.KEYBUZZ_VERSION or keybuzz.__version__,
    }
    return healthy, body
