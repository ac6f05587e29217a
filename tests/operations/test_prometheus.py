"""GET /metrics: Prometheus text format (parsed back with prometheus_client's own parser), the
bearer token, and the poller's counters coming from another process through the database."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from marketplaces.models import ConnectionStatus
from marketplaces.polling.records import poll_run_record
from tests.factories import make_tenant
from tests.operations.conftest import make_amazon_ticket, make_connection, make_message, make_quarantined

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, token: str | None = TOKEN, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/metrics", **headers)


def samples(response) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a scrape, through the official parser."""
    assert response.status_code == 200, response.content
    out = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def families(response) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(response.content.decode())}


def test_figures_as_gauges(client, token):
    now = timezone.now()
    acme = make_tenant("acme")
    c = make_connection(acme, last_polled_at=now - timedelta(seconds=120))
    make_connection(acme, status=ConnectionStatus.ERROR)
    make_connection(acme, app_source="keybuzz")
    make_message(c, created_at=now)
    make_message(c, created_at=now)
    make_amazon_ticket(c, created_at=now)
    make_quarantined(c, created_at=now)

    response = scrape(client)
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"
    s = samples(response)
    assert s[("keybuzz_amazon_connections_active", ())] == 1
    assert s[("keybuzz_amazon_connections", (("status", "CONNECTED"),))] == 1
    assert s[("keybuzz_amazon_connections", (("status", "ERROR"),))] == 1
    assert s[("keybuzz_amazon_connections", (("status", "NEEDS_REAUTH"),))] == 1
    assert s[("keybuzz_amazon_connections", (("status", "PENDING"),))] == 0
    assert 119 <= s[("keybuzz_amazon_oldest_poll_age_seconds", ())] <= 125
    assert s[("keybuzz_amazon_messages_today", ())] == 2
    assert s[("keybuzz_amazon_tickets_today", ())] == 1
    assert s[("keybuzz_quarantined_messages", ())] == 1
    assert s[("keybuzz_quarantined_messages_today", ())] == 1
    assert s[("keybuzz_tickets_overdue", ())] == 0
    assert s[("keybuzz_replies", (("delivery_status", "QUEUED"),))] == 0
    # No poll run yet: the "last run" series are absent rather than a misleading 0.
    assert ("keybuzz_poll_last_run_age_seconds", ()) not in s
    assert s[("keybuzz_poll_runs_total", ())] == 0
    # No tenant is named anywhere, and no secret reference either.
    body = response.content.decode()
    assert "acme" not in body and str(acme.id) not in body and "keybuzz/tenants" not in body


def test_poller_counters_and_histogram_come_from_the_poll_runs(client, token, settings):
    settings.AMAZON_USE_MOCK = True
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_MOCK_MESSAGES_PER_POLL = 3
    settings.AMAZON_POLL_WORKERS = 1
    make_connection(make_tenant(), connected_at=timezone.now())
    call_command("poll_amazon", "--once", stdout=io.StringIO())  # the cron process's work
    # A failing run elsewhere, slower: 45 s, 2 failed connections.
    finished = timezone.now()
    poll_run_record(
        worker="host2:7:ff",
        started_at=finished - timedelta(seconds=45),
        finished_at=finished,
        connections=2,
        fetched=0,
        new_messages=0,
        new_tickets=0,
        quarantined=0,
        failures=2,
        seconds=45.0,
    )

    response = scrape(client)
    types = families(response)
    assert types["keybuzz_poll_runs"] == "counter"
    assert types["keybuzz_poll_failures"] == "counter"
    assert types["keybuzz_poll_run_duration_seconds"] == "histogram"
    assert types["keybuzz_amazon_messages_today"] == "gauge"
    s = samples(response)
    assert s[("keybuzz_poll_runs_total", ())] == 2
    assert s[("keybuzz_poll_connections_total", ())] == 3
    assert s[("keybuzz_poll_failures_total", ())] == 2
    assert s[("keybuzz_poll_new_messages_total", ())] == 3
    assert s[("keybuzz_poll_new_tickets_total", ())] == 3
    assert s[("keybuzz_poll_run_duration_seconds_count", ())] == 2
    assert s[("keybuzz_poll_run_duration_seconds_bucket", (("le", "30.0"),))] == 1  # the mock run
    assert s[("keybuzz_poll_run_duration_seconds_bucket", (("le", "60.0"),))] == 2
    assert s[("keybuzz_poll_run_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert s[("keybuzz_poll_run_duration_seconds_sum", ())] >= 45.0
    assert s[("keybuzz_poll_last_run_duration_seconds", ())] == 45.0
    assert s[("keybuzz_poll_last_run_failures", ())] == 2
    assert 0 <= s[("keybuzz_poll_last_run_age_seconds", ())] < 60
    assert s[("keybuzz_poll_last_run_timestamp_seconds", ())] == pytest.approx(finished.timestamp())

    # Counters only grow: a second scrape after another run.
    call_command("poll_amazon", "--once", "--force", stdout=io.StringIO())
    assert samples(scrape(client))[("keybuzz_poll_runs_total", ())] == 3


def test_openmetrics_when_prometheus_asks(client, token):
    response = scrape(client, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_query_count_is_fixed(client, token, django_assert_max_num_queries):
    for _ in range(3):
        tenant = make_tenant()
        make_message(make_connection(tenant), created_at=timezone.now())
    with django_assert_max_num_queries(10):
        assert scrape(client).status_code == 200


# --- Who may scrape ------------------------------------------------------------------------------


def test_no_token_is_401(client, token):
    response = scrape(client, token=None)
    assert response.status_code == 401
    assert response.json() == {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided: send Authorization: Bearer <METRICS_TOKEN>.",
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", TOKEN])
def test_malformed_authorization_is_401(client, token, header):
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("wrong", [TOKEN + "x", TOKEN[:-1], "another-token"])
def test_wrong_token_is_403(client, token, wrong):
    response = scrape(client, token=wrong)
    assert response.status_code == 403
    assert response.json() == {"code": "permission_denied", "message": "Invalid metrics token."}
    assert TOKEN not in response.content.decode()


def test_unset_token_disables_the_endpoint(client, settings):
    settings.METRICS_TOKEN = ""
    for token in (None, "", "anything"):
        response = scrape(client, token=token)
        assert response.status_code == 404
        assert response.json() == {
            "code": "metrics_disabled",
            "message": "Metrics are disabled: set METRICS_TOKEN to enable GET /metrics.",
        }


def test_only_get(client, token):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


def test_a_jwt_session_or_superadmin_login_is_not_enough(client, token, superadmin):
    client.force_login(superadmin)
    assert client.get("/metrics").status_code == 401
