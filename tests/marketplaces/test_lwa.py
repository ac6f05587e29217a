"""The LWA client against Amazon's wire format: form-encoded POST in, JSON out, every failure kind."""

from __future__ import annotations

import pytest
import requests

from marketplaces.amazon import lwa
from tests.marketplaces.conftest import (
    ACCESS_TOKEN,
    AMAZON_OAUTH,
    CLIENT_ID,
    CLIENT_SECRET,
    LWA_URL,
    REFRESH_TOKEN,
    form_of,
    lwa_error,
    lwa_ok,
)

CODE = "ANcodeFromAmazon123"

pytestmark = AMAZON_OAUTH


def exchange(**extra):
    client = lwa.LwaClient(token_url=LWA_URL, timeout=3, retries=2, backoff=0)
    return client.exchange_authorization_code(code=CODE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **extra)


def test_exchange_sends_lwa_wire_format(fake_lwa):
    lwa_ok(fake_lwa)
    tokens = exchange(redirect_uri="https://api.keybuzz.io/cb")
    assert tokens.refresh_token == REFRESH_TOKEN
    assert tokens.access_token == ACCESS_TOKEN
    assert tokens.expires_in == 3600 and tokens.token_type == "bearer"
    call = fake_lwa.calls[0]
    assert call.request.method == "POST" and call.request.url == LWA_URL
    assert call.request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert call.request.headers["User-Agent"].startswith("KeyBuzz/")
    assert form_of(call) == {
        "grant_type": "authorization_code",
        "code": CODE,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": "https://api.keybuzz.io/cb",
    }
    # The dataclass never prints its tokens.
    assert REFRESH_TOKEN not in repr(tokens) and ACCESS_TOKEN not in repr(tokens)


def test_exchange_uses_a_timeout(fake_lwa, monkeypatch):
    seen = {}
    original = requests.Session.post

    def spy(self, url, **kwargs):
        seen.update(kwargs)
        return original(self, url, **kwargs)

    monkeypatch.setattr(requests.Session, "post", spy)
    lwa_ok(fake_lwa)
    exchange()
    assert seen["timeout"] == 3


def test_refresh_access_token(fake_lwa):
    fake_lwa.post(LWA_URL, json={"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600})
    client = lwa.LwaClient(token_url=LWA_URL, timeout=3, backoff=0)
    tokens = client.refresh_access_token(refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert tokens.access_token == ACCESS_TOKEN and tokens.refresh_token is None
    assert form_of(fake_lwa.calls[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH_TOKEN,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("invalid_grant", 400),
        ("invalid_client", 401),
        ("unauthorized_client", 400),
        ("invalid_request", 400),
    ],
)
def test_amazon_rejections_keep_amazon_error_code(fake_lwa, error, status):
    lwa_error(fake_lwa, error=error, status=status)
    with pytest.raises(lwa.LwaRejected) as caught:
        exchange()
    assert caught.value.code == error and caught.value.status == status
    assert error in str(caught.value)
    assert len(fake_lwa.calls) == 1  # a 4xx is never retried


def test_error_description_never_carries_a_credential(fake_lwa):
    lwa_error(fake_lwa, error="invalid_grant", description=f"bad code {CODE} for client secret {CLIENT_SECRET}")
    with pytest.raises(lwa.LwaRejected) as caught:
        exchange()
    assert CODE not in str(caught.value) and CLIENT_SECRET not in str(caught.value)


def test_5xx_is_retried_then_succeeds(fake_lwa):
    fake_lwa.post(LWA_URL, status=503, body="Service Unavailable")
    fake_lwa.post(LWA_URL, status=500, json={"error": "server_error"})
    lwa_ok(fake_lwa)
    assert exchange().refresh_token == REFRESH_TOKEN
    assert len(fake_lwa.calls) == 3


def test_5xx_after_the_retries_is_unavailable(fake_lwa):
    fake_lwa.post(LWA_URL, status=503, json={"error": "ServiceUnavailable"})
    with pytest.raises(lwa.LwaUnavailable) as caught:
        exchange()
    assert len(fake_lwa.calls) == 3  # 1 + 2 retries, bounded
    assert caught.value.code in {"ServiceUnavailable", "server_error"}


def test_timeout_is_unavailable_and_not_retried(fake_lwa):
    fake_lwa.post(LWA_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(lwa.LwaUnavailable) as caught:
        exchange()
    assert caught.value.code == "timeout"
    assert len(fake_lwa.calls) == 1


def test_connection_error_is_unavailable(fake_lwa):
    fake_lwa.post(LWA_URL, body=requests.exceptions.ConnectionError("connection refused"))
    with pytest.raises(lwa.LwaUnavailable) as caught:
        exchange()
    assert caught.value.code == "connection_error"


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600},  # no refresh_token
        {"refresh_token": REFRESH_TOKEN},  # no access_token
        {"access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN, "expires_in": "soon"},
    ],
)
def test_unusable_200_answers(fake_lwa, body):
    fake_lwa.post(LWA_URL, json=body)
    with pytest.raises(lwa.LwaInvalidResponse) as caught:
        exchange()
    assert caught.value.code == "invalid_response"


def test_non_json_answers(fake_lwa):
    fake_lwa.post(LWA_URL, body="<html>oops</html>", status=200)
    with pytest.raises(lwa.LwaInvalidResponse):
        exchange()
    fake_lwa.replace("POST", LWA_URL, body="<html>bad</html>", status=400)
    with pytest.raises(lwa.LwaRejected) as caught:
        exchange()
    assert caught.value.code == "http_400"
