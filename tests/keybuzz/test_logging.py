"""Log lines (keybuzz/logging.py, issue 6 item 5): one line per event with time, level, logger,
tenant and connection ids; JSON lines with LOG_FORMAT=json; the runbook's grep lines find the
failures; no secret ever reaches a line.

The lines are captured from the console handler the settings configure (its stream swapped for a
buffer), so what is tested is what journald and the cron log files receive."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import responses
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from keybuzz.logging import (
    JsonFormatter,
    LineFormatter,
    RedactSecretsFilter,
    log_context,
    log_context_bind,
    redact,
)
from marketplaces.models import MarketplaceConnection
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.conftest import (
    ACCESS_TOKEN,
    CALLBACK_URL,
    CLIENT_SECRET,
    LWA_URL,
    REFRESH_TOKEN,
    callback,
    lwa_error,
    lwa_ok,
    start_flow,
)
from tests.marketplaces.scripted_sources import ScriptedSource, TokenScriptedSource, raw_message

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) (?P<logger>[\w.]+) "
    r"tenant=(?P<tenant>\S+) connection=(?P<connection>\S+) (?P<message>.*)$"
)
# The runbook's "Logs à surveiller", verbatim.
GREP_OAUTH = "amazon oauth.*error"
GREP_POLLER = "amazon poller.*error"
GREP_REFRESH = "token refresh failed"
VAULT_TOKEN = "hvs.CAESIKeyBuzzTestVaultToken0123456789abcdefGh4KHGh2cy5xd2VydHl1aW9w"


@pytest.fixture(autouse=True)
def clean_log_context():
    with log_context(tenant_id=None, connection_id=None):
        yield


@pytest.fixture
def console():
    """The configured console handler, writing to a buffer; `.text()` and `.lines()` read it."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.name == "console")
    buffer = io.StringIO()
    old_stream = handler.setStream(buffer)
    old_level = root.level
    root.setLevel(logging.INFO)

    class Captured:
        formatter = handler.formatter

        @staticmethod
        def text() -> str:
            return buffer.getvalue()

        @staticmethod
        def lines() -> list[str]:
            return buffer.getvalue().splitlines()

        @staticmethod
        def use(formatter: logging.Formatter) -> None:
            handler.setFormatter(formatter)

    try:
        yield Captured
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(Captured.formatter)
        root.setLevel(old_level)


def grep(pattern: str, text: str, tmp_path: Path) -> list[str]:
    """The operator's `grep -i PATTERN file`, with the real grep."""
    log = tmp_path / "captured.log"
    log.write_text(text)
    found = subprocess.run(["grep", "-i", pattern, str(log)], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.splitlines()


def parsed(line: str) -> dict[str, str]:
    match = LINE.match(line)
    assert match, f"not a KeyBuzz log line: {line!r}"
    return match.groupdict()


def poll(*args: str) -> int:
    try:
        call_command("poll_amazon", "--once", *args, stdout=io.StringIO())
    except CommandError as exc:
        return exc.returncode
    return 0


@pytest.fixture
def one_worker(settings):
    settings.AMAZON_POLL_WORKERS = 1


@pytest.fixture
def no_retry_sleep(monkeypatch):
    """A fresh LWA client (it reads the settings) and no sleeping between its retries."""
    from marketplaces.amazon import lwa

    monkeypatch.setattr("urllib3.util.retry.Retry.sleep", lambda self, response=None: None)
    lwa._client = None
    yield
    lwa._client = None


# --- The format ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_poll_lines_carry_time_level_logger_tenant_and_connection(settings, one_worker, console):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    first, second = make_connection(seller="A1FIRST"), make_connection(seller="A1SECOND")

    assert poll() == 0

    poller_lines = [parsed(line) for line in console.lines() if "[Amazon Poller]" in line]
    for connection in (first, second):
        mine = [p for p in poller_lines if p["connection"] == str(connection.id)]
        words = [p["message"] for p in mine]
        assert any(w.startswith(f"[Amazon Poller] Starting poll for tenant: {connection.tenant_id}") for w in words)
        assert any(w.startswith(f"[Amazon Poller] Fetched 3 messages for tenant {connection.tenant_id}") for w in words)
        assert any(w.startswith(f"[Amazon Poller] Poll completed for tenant: {connection.tenant_id}") for w in words)
        assert {p["tenant"] for p in mine} == {str(connection.tenant_id)}
        assert {(p["level"], p["logger"]) for p in mine} == {("INFO", "marketplaces.poller")}
    # Outside a connection's poll, no ids are left behind.
    with log_context():
        logging.getLogger("marketplaces.poller").info("after the run")
    assert parsed(console.lines()[-1])["tenant"] == parsed(console.lines()[-1])["connection"] == "-"


def test_a_message_never_spans_two_lines(console):
    logging.getLogger("keybuzz.test").warning("buyer wrote:\nfake 2025 ERROR line\rend")
    assert len(console.lines()) == 1
    assert parsed(console.lines()[0])["message"] == "buyer wrote:\\nfake 2025 ERROR line\\rend"


def test_a_traceback_follows_its_line(console):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("keybuzz.test").exception("[Amazon Poller] Poll error for tenant t: Fetch failed")
    lines = console.lines()
    assert parsed(lines[0])["level"] == "ERROR"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"


def test_json_lines_parse_one_by_one_with_the_ids_and_the_traceback(console):
    console.use(JsonFormatter())
    log = logging.getLogger("marketplaces.poller")
    with log_context(tenant_id="t-1", connection_id="c-1"):
        log.info("[Amazon Poller] Starting poll for tenant: %s", "t-1")
        try:
            raise ValueError(f"bad answer with {REFRESH_TOKEN}")
        except ValueError:
            log.exception("[Amazon Poller] Poll error for tenant %s", "t-1")
    log.warning("no context\nsecond line")

    entries = [json.loads(line) for line in console.lines()]
    assert len(entries) == 3
    assert entries[0] == {
        "time": entries[0]["time"],
        "level": "INFO",
        "logger": "marketplaces.poller",
        "message": "[Amazon Poller] Starting poll for tenant: t-1",
        "tenant_id": "t-1",
        "connection_id": "c-1",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entries[0]["time"])
    assert entries[1]["level"] == "ERROR" and "ValueError: bad answer with Atzr|[redacted]" in entries[1]["exc_info"]
    assert REFRESH_TOKEN not in console.text()
    assert entries[2]["tenant_id"] is None and entries[2]["message"] == "no context\nsecond line"
    assert "exc_info" not in entries[0]


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DATABASE_URL", "VAULT_"))}
    base.update(KEYBUZZ_ENV_FILE="none", DEBUG="true", KEYBUZZ_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def _settings_subprocess(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return _manage(tmp_path, "shell", "--no-imports", "-c", code, **env)


def test_log_format_json_from_the_environment(tmp_path):
    code = (
        "import logging\n"
        "from keybuzz.logging import log_context\n"
        "with log_context(tenant_id='t-9', connection_id='c-9'):\n"
        "    logging.getLogger('marketplaces.poller').error('[Amazon Poller] Poll error for tenant t-9: x')\n"
        "logging.getLogger('marketplaces.oauth').warning('Amazon OAuth callback error: Invalid state: unknown')\n"
    )
    done = _settings_subprocess(tmp_path, code, LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["logger"], e["tenant_id"], e["connection_id"]) for e in entries] == [
        ("marketplaces.poller", "t-9", "c-9"),
        ("marketplaces.oauth", None, None),
    ]

    line_mode = _settings_subprocess(tmp_path, code)
    assert [parsed(line)["tenant"] for line in line_mode.stderr.splitlines()] == ["t-9", "-"]


def test_an_unknown_log_format_stops_start_up_with_one_line(tmp_path):
    done = _manage(tmp_path, "check", LOG_FORMAT="xml")
    assert done.returncode == 2
    assert done.stderr.strip() == "Configuration error: LOG_FORMAT must be one of line, json, not 'xml'"


# --- Redaction ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        (REFRESH_TOKEN, "Atzr|[redacted]"),
        (ACCESS_TOKEN, "Atza|[redacted]"),
        (
            "amzn1.oa2-cs.v1.3f1e9c0b2a7d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
            "amzn1.oa2-cs.v1.[redacted]",
        ),
        (VAULT_TOKEN, "hvs.[redacted]"),
        ("s.Q2h7XyZk9LmN3pRt5VwB1cDe", "s.[redacted]"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl", "Bearer [redacted]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl", "[redacted-jwt]"),
        ("client_secret=abc123XYZ", "client_secret=[redacted]"),
        ('"refresh_token": "opaque-value-1"', '"refresh_token": "[redacted]"'),
        ("password=hunter2!", "password=[redacted]"),
    ],
)
def test_secret_shapes_are_masked(secret, shown):
    text = redact(f"before {secret} after")
    assert text == f"before {shown} after"


@pytest.mark.parametrize(
    "harmless",
    [
        "[Amazon Poller] Token refresh failed: HTTP 400: invalid_grant (The request has an invalid grant parameter)",
        "Token refresh failed: no refresh_token at keybuzz/tenants/3f2b/amazon/A1SELLER",
        "Amazon OAuth start: tenant 0b6f8c1e-2a9d-4c3b-8e7f-1a2b3c4d5e6f, user 7, region EU, marketplace FR, app keybuzz",
        "No credentials found: keybuzz/ai/amazon_spapi_app_temp",
        "Vault token renewed for 3600s",
        "GET /api/v1/marketplaces/amazon/status 200",
    ],
)
def test_ordinary_lines_are_left_alone(harmless):
    assert redact(harmless) == harmless


def test_the_filter_masks_arguments_and_tracebacks(console):
    log = logging.getLogger("keybuzz.test")
    log.info("Authorization: Bearer %s for %s", "eyJhbGciOiJIUzI1NiJ9.eyJ0IjoxfQ.sig", "tenant-1")
    try:
        raise RuntimeError(f"vault said no to {VAULT_TOKEN}")
    except RuntimeError:
        log.exception("lookup failed")
    text = console.text()
    assert "eyJ" not in text and VAULT_TOKEN not in text
    assert "Bearer [redacted] for tenant-1" in text and "RuntimeError: vault said no to hvs.[redacted]" in text


def test_redaction_and_context_filters_are_on_the_console_handler():
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
    assert isinstance(handler.formatter, LineFormatter)


# --- The runbook's grep lines find the failures (produced for real) ---------------------------------


@pytest.mark.django_db
def test_invalid_state_callback_is_found_by_the_oauth_grep(settings, console, tmp_path):
    settings.AMAZON_SPAPI_CLIENT_ID = "amzn1.application-oa2-client.log-test"
    settings.AMAZON_SPAPI_CLIENT_SECRET = CLIENT_SECRET
    settings.AMAZON_SPAPI_APPLICATION_ID = "amzn1.sp.solution.log-test"
    settings.FRONTEND_URL = settings.AMAZON_OAUTH_RETURN_URL = ""

    response = APIClient().get(
        CALLBACK_URL, {"state": "forged-state", "spapi_oauth_code": "ANcode", "selling_partner_id": "A1X"}
    )

    assert response.status_code == 400
    found = grep(GREP_OAUTH, console.text(), tmp_path)
    assert len(found) == 1 and "Invalid state: unknown" in found[0]
    assert parsed(found[0])["level"] == "WARNING" and parsed(found[0])["logger"] == "marketplaces.oauth"


@pytest.mark.django_db
def test_token_exchange_failure_is_found_by_the_oauth_grep_with_the_tenant(settings, console, tmp_path, no_retry_sleep):
    settings.AMAZON_SPAPI_CLIENT_ID = "amzn1.application-oa2-client.log-test"
    settings.AMAZON_SPAPI_CLIENT_SECRET = CLIENT_SECRET
    settings.AMAZON_SPAPI_APPLICATION_ID = "amzn1.sp.solution.log-test"
    settings.AMAZON_LWA_TOKEN_URL = LWA_URL
    settings.FRONTEND_URL = settings.AMAZON_OAUTH_RETURN_URL = ""
    owner = make_member()
    client = api_client(owner)
    with responses.RequestsMock() as rsps:
        state = start_flow(client)
        lwa_error(rsps, error="invalid_grant")
        assert callback(APIClient(), state=state, code="ANsingleUseCode").status_code == 400

    found = grep(GREP_OAUTH, console.text(), tmp_path)
    assert len(found) == 1 and "Token exchange failed: HTTP 400: invalid_grant" in found[0]
    connection = MarketplaceConnection.objects.get()
    assert parsed(found[0])["tenant"] == str(owner.tenant_id)
    assert parsed(found[0])["connection"] == str(connection.id)
    start_line = next(line for line in console.lines() if "Amazon OAuth start" in line)
    assert parsed(start_line)["tenant"] == str(owner.tenant_id)  # bound by the JWT authentication
    assert "ANsingleUseCode" not in console.text() and CLIENT_SECRET not in console.text()


@pytest.mark.django_db
def test_failing_source_is_found_by_the_poller_grep(settings, one_worker, console, tmp_path):
    from marketplaces.sources import SourceError

    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.ScriptedSource"
    ScriptedSource.calls = []
    ScriptedSource.script = {"A1BROKEN": SourceError("Amazon answered 503 QuotaExceeded"), "A1FINE": [raw_message(1)]}
    broken, fine = make_connection(seller="A1BROKEN"), make_connection(seller="A1FINE")

    assert poll() == 1

    found = grep(GREP_POLLER, console.text(), tmp_path)
    assert len(found) == 1
    assert "Poll error for tenant" in found[0] and "QuotaExceeded" in found[0]
    assert (parsed(found[0])["tenant"], parsed(found[0])["connection"]) == (str(broken.tenant_id), str(broken.id))
    assert parsed(found[0])["level"] == "ERROR"
    fine_lines = [parsed(line) for line in console.lines() if str(fine.id) in line and "[Amazon Poller]" in line]
    assert fine_lines and {p["connection"] for p in fine_lines} == {str(fine.id)}


@pytest.mark.django_db
def test_lwa_invalid_grant_is_found_by_the_token_refresh_grep(settings, one_worker, console, tmp_path, no_retry_sleep):
    from keybuzz.secrets import get_secret_store

    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    settings.AMAZON_SPAPI_CLIENT_ID = "amzn1.application-oa2-client.log-test"
    settings.AMAZON_SPAPI_CLIENT_SECRET = CLIENT_SECRET
    settings.AMAZON_SPAPI_APPLICATION_ID = "amzn1.sp.solution.log-test"
    settings.AMAZON_LWA_TOKEN_URL = LWA_URL
    connection = make_connection(seller="A1TOKEN")
    get_secret_store().write(connection.secret_ref, {"refresh_token": REFRESH_TOKEN})
    TokenScriptedSource.calls = []
    TokenScriptedSource.script = {"A1TOKEN": [raw_message(1)]}

    with responses.RequestsMock() as rsps:
        lwa_error(rsps, error="invalid_grant", description="The request has an invalid grant parameter")
        assert poll() == 1

    found = grep(GREP_REFRESH, console.text(), tmp_path)
    assert len(found) == 1 and "NEEDS_REAUTH" in found[0] and "invalid_grant" in found[0]
    assert (parsed(found[0])["tenant"], parsed(found[0])["connection"]) == (
        str(connection.tenant_id),
        str(connection.id),
    )
    assert grep(GREP_POLLER, console.text(), tmp_path) == found  # an operator grepping poller errors sees it
    assert REFRESH_TOKEN not in console.text() and CLIENT_SECRET not in console.text()


# --- No secret in any line --------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_secret_in_any_line_of_a_whole_flow(vault_settings, settings, one_worker, console, no_retry_sleep):
    """Connect through OAuth against OpenBao, poll with a real token refresh, fail, disconnect —
    at DEBUG level — and look for every secret involved in the captured lines."""
    openbao = vault_settings
    settings.AMAZON_SPAPI_CLIENT_ID = settings.AMAZON_SPAPI_CLIENT_SECRET = settings.AMAZON_SPAPI_APPLICATION_ID = ""
    settings.AMAZON_SPAPI_APP_SOURCE = "external_test"
    settings.AMAZON_LWA_TOKEN_URL = LWA_URL
    settings.AMAZON_USE_MOCK = False
    settings.FRONTEND_URL = settings.AMAZON_OAUTH_RETURN_URL = ""
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    app_secret = "amzn1.oa2-cs.v1.0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    openbao.client().secrets.kv.v2.create_or_update_secret(
        path="keybuzz/ai/amazon_spapi_app_temp",
        mount_point=openbao.mount,
        secret={
            "client_id": "amzn1.application-oa2-client.no-secret-test",
            "client_secret": app_secret,
            "application_id": "amzn1.sp.solution.no-secret-test",
            "region": "eu-west-1",
        },
    )
    logging.getLogger().setLevel(logging.DEBUG)

    owner = make_member()
    client = api_client(owner)
    jwt = client._credentials["HTTP_AUTHORIZATION"].split()[1]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(openbao.addr)
        state = start_flow(client)
        lwa_ok(rsps)
        assert callback(APIClient(), state=state, code="ANcodeNeverLogged").status_code == 200
        connection = MarketplaceConnection.objects.get()
        TokenScriptedSource.calls = []
        TokenScriptedSource.script = {connection.selling_partner_id: [raw_message(1)]}
        assert poll() == 0  # refresh_token grant → access token → fetch
        assert TokenScriptedSource.calls == [(connection.selling_partner_id, ACCESS_TOKEN)]
        rsps.replace(
            responses.POST,
            LWA_URL,
            status=400,
            json={"error": "invalid_grant", "error_description": f"bad token {REFRESH_TOKEN}"},
        )
        from marketplaces.amazon.tokens import AccessTokenProvider
        from marketplaces.polling import poll_run

        poll_run(force=True, tokens=AccessTokenProvider())
        assert client.post("/api/v1/marketplaces/amazon/disconnect", {}, format="json").status_code == 200

    text = console.text()
    assert "Amazon OAuth callback: tenant" in text and "Token refresh failed" in text  # the flow did log
    for secret in (
        REFRESH_TOKEN,
        ACCESS_TOKEN,
        app_secret,
        settings.JWT_SECRET,
        openbao.root_token,
        jwt,
        state,
        "ANcodeNeverLogged",
    ):
        assert secret not in text, f"a secret reached the logs: {secret[:12]}…"


def test_log_context_nests_and_restores():
    from keybuzz.logging import connection_id_var, tenant_id_var

    def ids():
        return tenant_id_var.get(), connection_id_var.get()

    with log_context(tenant_id="a"):
        with log_context(connection_id="c"):
            assert ids() == ("a", "c")
            log_context_bind(tenant_id="b")  # lasts until the enclosing context ends
        assert ids() == ("b", None)
    assert ids() == (None, None)


@pytest.mark.django_db
def test_a_request_leaves_no_tenant_behind(console):
    owner = make_member()
    assert api_client(owner).get("/api/v1/marketplaces/amazon/status").status_code == 200
    logging.getLogger("keybuzz.test").info("next event in this thread")
    assert parsed(console.lines()[-1])["tenant"] == "-"
