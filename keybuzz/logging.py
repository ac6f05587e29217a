"""Log lines: one per event, with time, level, logger, tenant and connection ids; secrets masked.

- `log_context(tenant_id=…, connection_id=…)` (a context manager) and `log_context_bind(…)` put the
  ids in context variables; every record logged meanwhile carries them. The poller wraps each
  connection's poll, API authentication binds the tenant, the OAuth callback binds tenant and
  connection; `LogContextMiddleware` gives every HTTP request a clean context (a worker thread
  serves many tenants one after the other).
- Two formats, chosen with `LOG_FORMAT`: `line` (default)
  `2025-12-14T10:00:00.123Z INFO marketplaces.poller tenant=<id> connection=<id> [Amazon Poller] …`
  and `json`, one object per line: time, level, logger, message, tenant_id, connection_id, and
  exc_info when there is a traceback.
- `RedactSecretsFilter`, on the handlers, is a safety net behind the rule that no code logs a
  secret: it masks anything shaped like an LWA refresh/access token, an LWA client secret, a Vault
  token, a JWT, an OpenAI-style `sk-…` key (the AI gateway's), a `Bearer …` value or a `client_secret=…`-style pair, in messages and tracebacks.

This module is imported by the settings and by `deploy/gunicorn.conf.py` before Django is set up,
so it imports nothing from Django.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("line", "json")
REDACTED = "[redacted]"

tenant_id_var: ContextVar[str | None] = ContextVar("keybuzz_log_tenant_id", default=None)
connection_id_var: ContextVar[str | None] = ContextVar("keybuzz_log_connection_id", default=None)

_UNSET: Any = object()


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


@contextmanager
def log_context(*, tenant_id: object = _UNSET, connection_id: object = _UNSET) -> Iterator[None]:
    """Records logged inside the block carry these ids (None clears one); restored on exit."""
    tokens = []
    if tenant_id is not _UNSET:
        tokens.append((tenant_id_var, tenant_id_var.set(_text(tenant_id))))
    if connection_id is not _UNSET:
        tokens.append((connection_id_var, connection_id_var.set(_text(connection_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def log_context_bind(*, tenant_id: object = _UNSET, connection_id: object = _UNSET) -> None:
    """Sets the ids until the enclosing `log_context` (e.g. the request's) ends."""
    if tenant_id is not _UNSET:
        tenant_id_var.set(_text(tenant_id))
    if connection_id is not _UNSET:
        connection_id_var.set(_text(connection_id))


class LogContextMiddleware:
    """Each request starts with no tenant and no connection, and leaves none behind."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        with log_context(tenant_id=None, connection_id=None):
            return self.get_response(request)


# --- Redaction ----------------------------------------------------------------------------------

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # LWA refresh ("Atzr|…") and access ("Atza|…") tokens.
    (re.compile(r"\b(Atz[ra])\|[^\s\"'<>,;)\]}]+"), rf"\1|{REDACTED}"),
    # LWA client secrets.
    (re.compile(r"\bamzn1\.oa2-cs\.v1\.[A-Za-z0-9]+"), f"amzn1.oa2-cs.v1.{REDACTED}"),
    # Vault tokens: service/batch/recovery (hvs./hvb./hvr.), and the legacy 24-character s./b. ones.
    (re.compile(r"\b(hv[sbr])\.[A-Za-z0-9_-]{20,}"), rf"\1.{REDACTED}"),
    (re.compile(r"(?<![A-Za-z0-9_.\-/])([sb])\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"), rf"\1.{REDACTED}"),
    # OpenAI-style API keys, as LiteLLM issues them (sk-…, sk-proj-…): the AI gateway's key.
    (re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{16,}"), f"sk-{REDACTED}"),
    # An Authorization header value.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {REDACTED}"),
    # JWTs (header.payload.signature, base64url of JSON objects).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    # key=value / "key": "value" pairs whose key names a secret.
    (
        re.compile(
            r"(?i)\b(client_secret|refresh_token|access_token|secret_id|vault_token|jwt_secret|password"
            r"|spapi_oauth_code|api_key)(\"?'?\s*[:=]\s*\"?'?)(?![\s\"',}&]|\[redacted)[^\s\"',}&]+"
        ),
        rf"\1\2{REDACTED}",
    ),
]


def redact(text: str) -> str:
    """`text` with every secret-shaped substring masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Renders the message (and traceback) of a record once, masked; formatters then use that."""

    _exception_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Adds `tenant_id` and `connection_id` to every record (an explicit `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tenant_id", None) is None:
            record.tenant_id = tenant_id_var.get()
        if getattr(record, "connection_id", None) is None:
            record.connection_id = connection_id_var.get()
        return True


# --- Formats ------------------------------------------------------------------------------------


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exception_text(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(formatter.formatException(record.exc_info))
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text


class LineFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> tenant=<id|-> connection=<id|-> <message>`; a traceback follows on
    the next lines. Newlines inside the message are escaped so an event never spans two lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = (
            f"{_time(record)} {record.levelname} {record.name} "
            f"tenant={getattr(record, 'tenant_id', None) or '-'} "
            f"connection={getattr(record, 'connection_id', None) or '-'} {message}"
        )
        extra = _exception_text(record, self)
        return f"{line}\n{extra}" if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, tenant_id, connection_id[, exc_info]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "tenant_id": getattr(record, "tenant_id", None),
            "connection_id": getattr(record, "connection_id", None),
        }
        extra = _exception_text(record, self)
        if extra:
            entry["exc_info"] = extra
        return json.dumps(entry, ensure_ascii=False, default=str)


def _check(fmt: str) -> str:
    fmt = (fmt or "line").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def _pieces(fmt: str) -> tuple[dict, dict]:
    formatter_class = JsonFormatter if _check(fmt) == "json" else LineFormatter
    formatters = {"keybuzz": {"()": f"{__name__}.{formatter_class.__name__}"}}
    filters = {
        "keybuzz_context": {"()": f"{__name__}.ContextFilter"},
        "keybuzz_redact": {"()": f"{__name__}.RedactSecretsFilter"},
    }
    return formatters, filters


# Every handler writes through the context and redaction filters, in the chosen format.
_STREAM_HANDLER = {
    "class": "logging.StreamHandler",
    "formatter": "keybuzz",
    "filters": ["keybuzz_context", "keybuzz_redact"],
}


def logging_config(*, level: str = "INFO", fmt: str = "line") -> dict[str, Any]:
    """Django's LOGGING: everything goes to stderr (journald, or the cron job's log file)."""
    formatters, filters = _pieces(fmt)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "filters": filters,
        "handlers": {"console": dict(_STREAM_HANDLER)},
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            # Django's own console handler would print its records a second time through the root.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            # hvac and urllib3 log request URLs at DEBUG; keep them quiet so no path or token leaks.
            "hvac": {"level": "WARNING"},
            # django-axes writes four INFO lines per login; its lockouts and failures are WARNING.
            "axes": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def gunicorn_logconfig(*, level: str = "INFO", fmt: str = "line") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error log (stderr) and access log (stdout) in the same format."""
    formatters, filters = _pieces(fmt)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "filters": filters,
        "handlers": {
            "keybuzz_stderr": {**_STREAM_HANDLER, "stream": "ext://sys.stderr"},
            "keybuzz_stdout": {**_STREAM_HANDLER, "stream": "ext://sys.stdout"},
        },
        "root": {"handlers": ["keybuzz_stderr"], "level": level.upper()},
        "loggers": {
            "gunicorn.error": {"handlers": ["keybuzz_stderr"], "level": level.upper(), "propagate": False},
            "gunicorn.access": {"handlers": ["keybuzz_stdout"], "level": "INFO", "propagate": False},
        },
    }
