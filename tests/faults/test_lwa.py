"""Login with Amazon timing out, throttling (429) and failing (5xx) in the middle of a run: those
connections back off with the reason, the others are polled, and the next run completes."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
import responses

from marketplaces.amazon.refresh_tokens import refresh_token_path, refresh_token_store
from marketplaces.models import ConnectionStatus, ExternalMessage, MarketplaceConnection
from marketplaces.polling import poll_run
from tests.factories import make_connection, make_tenant
from tests.marketplaces.scripted_sources import TokenScriptedSource, raw_message

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("amazon_app", "no_retry_sleep")]
LWA_URL = "https://api.amazon.com/auth/o2/token"
OK = (200, {"access_token": "Atza|fresh", "token_type": "bearer", "expires_in": 3600})
# What LWA does for each seller's refresh token during the first run.
FAULTS = {
    "OK": [OK],
    "TIMEOUT": [requests.exceptions.ReadTimeout("read timed out")],
    "THROTTLED": [(429, {"error": "rate_limit_exceeded", "error_description": "Too many requests"})],
    "DOWN": [(503, {"error": "server_error", "error_description": "Service unavailable"})] * 3,  # and its 2 retries
}


@pytest.fixture
def sellers(settings, requires_postgres):
    settings.AMAZON_MESSAGE_SOURCE = "tests.marketplaces.scripted_sources.TokenScriptedSource"
    settings.AMAZON_POLL_WORKERS = 1
    tenant = make_tenant()
    for seller in FAULTS:
        path = refresh_token_path(tenant_id=tenant.id, selling_partner_id=seller)
        refresh_token_store(
            path=path,
            refresh_token=f"Atzr|{seller}",
            selling_partner_id=seller,
            app_source="external_test",
            region="EU",
        )
        make_connection(tenant, seller=seller, secret_ref=path)
    TokenScriptedSource.script = {
        seller: [raw_message(100 * n + i) for i in range(3)] for n, seller in enumerate(FAULTS)
    }
    TokenScriptedSource.calls = []


def lwa(outcomes: dict[str, list]):
    queues = {seller: list(answers) for seller, answers in outcomes.items()}

    def answer(request):
        seller = parse_qs(request.body)["refresh_token"][0].removeprefix("Atzr|")
        waiting = queues.get(seller, [])
        outcome = waiting.pop(0) if waiting else OK
        if isinstance(outcome, Exception):
            raise outcome
        status, body = outcome
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.add_callback("POST", LWA_URL, callback=answer)
    return mock


def test_lwa_faults_mid_run_back_off_those_connections_only(sellers):
    with lwa(FAULTS):
        summary = poll_run(force=True)
    assert (summary.connections, summary.failures, summary.new_messages) == (4, 3, 3)
    rows = {c.selling_partner_id: c for c in MarketplaceConnection.objects.all()}
    assert rows["OK"].last_error == "" and rows["OK"].consecutive_failures == 0
    assert "Token refresh failed: timeout" in rows["TIMEOUT"].last_error
    assert "Token refresh failed: HTTP 429: rate_limit_exceeded" in rows["THROTTLED"].last_error
    assert "Token refresh failed" in rows["DOWN"].last_error and "503" in rows["DOWN"].last_error
    for seller in ("TIMEOUT", "THROTTLED", "DOWN"):
        row = rows[seller]
        # Amazon's trouble is not the seller's: no NEEDS_REAUTH, a retry after the backoff.
        assert row.status == ConnectionStatus.CONNECTED and row.consecutive_failures == 1
        assert row.next_poll_at > row.last_error_at and row.poll_cursor == ""

    with lwa({}):
        again = poll_run(force=True)
    assert (again.failures, again.new_messages) == (0, 9)
    assert ExternalMessage.objects.count() == 12
    assert not MarketplaceConnection.objects.exclude(last_error="").exists()


def test_an_unretried_run_skips_connections_still_backing_off(sellers):
    with lwa(FAULTS):
        poll_run(force=True)
    with lwa({}):
        summary = poll_run()  # no --force: the three are not due yet
    assert summary.connections == 0
