"""Login with Amazon (LWA): the OAuth 2.0 token endpoint of the Selling Partner API.

Two grants are used:
- `authorization_code`: the website authorization workflow's `spapi_oauth_code` → a refresh token
  (once, at connection time; see `exchange_authorization_code`);
- `refresh_token`: a stored refresh token → a one-hour access token (by the poller; see
  `refresh_access_token`).

Wire format: `POST https://api.amazon.com/auth/o2/token`, body
`application/x-www-form-urlencoded` (`grant_type`, `code` or `refresh_token`, `client_id`,
`client_secret`[, `redirect_uri`]). 200 answers JSON `{access_token, refresh_token, token_type,
expires_in}`; errors are 400/401 JSON `{error, error_description}` (`invalid_grant`,
`invalid_client`, `unauthorized_client`, `invalid_request`, …).

Errors raised here carry Amazon's `error` code and a description cleaned of any credential, so
their `str()` is safe to log and to store in `last_error`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import keybuzz

logger = logging.getLogger(__name__)

USER_AGENT = f"KeyBuzz/{keybuzz.__version__} (Language=Python)"
RETRY_STATUSES = (500, 502, 503, 504)
MAX_DESCRIPTION = 200


@dataclass(frozen=True)
class LwaTokens:
    """A successful token answer. The tokens are kept out of `repr()` so they never reach a log."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)


class LwaError(Exception):
    """Base of LWA failures. `code` is Amazon's `error` value when Amazon answered one (else one
    of ours: `server_error`, `timeout`, `connection_error`, `invalid_response`)."""

    def __init__(self, code: str, description: str = "", *, status: int | None = None) -> None:
        self.code = code
        self.description = description
        self.status = status
        detail = f" ({description})" if description else ""
        where = f"HTTP {status}: " if status else ""
        super().__init__(f"{where}{code}{detail}")


class LwaRejected(LwaError):
    """Amazon refused the request (4xx): a bad, used or expired code or refresh token
    (`invalid_grant`), wrong app credentials (`invalid_client`), … Retrying will not help."""


class LwaUnavailable(LwaError):
    """Amazon could not answer (5xx, timeout, connection failure) even after the retries."""


class LwaInvalidResponse(LwaError):
    """Amazon answered 200 with a body that is not a usable token answer (e.g. no refresh_token)."""


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Amazon's description, shortened, with any credential we sent removed (defence in depth)."""
    clean = " ".join(str(text).split())[:MAX_DESCRIPTION]
    for secret in secrets:
        if secret and len(secret) >= 4:
            clean = clean.replace(secret, "[redacted]")
    return clean


class LwaClient:
    """One `requests.Session` for the token endpoint: default timeout, User-Agent, and a bounded
    retry with backoff on connection failures and 5xx answers.

    Read timeouts are not retried: by then Amazon may have consumed the (single-use) authorization
    code, and a second attempt would only turn a timeout into a confusing `invalid_grant`."""

    def __init__(
        self, *, token_url: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5, trust_env: bool = True
    ) -> None:
        self.token_url = token_url
        self.timeout = timeout
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            other=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            backoff_factor=backoff,
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self.session = requests.Session()
        self.session.trust_env = trust_env  # False for the local fake: never through a proxy
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def exchange_authorization_code(
        self, *, code: str, client_id: str, client_secret: str, redirect_uri: str = ""
    ) -> LwaTokens:
        """The `spapi_oauth_code` from the consent callback → tokens, with a refresh token."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        tokens = self._post(form, secrets=(code, client_secret))
        if not tokens.refresh_token:
            raise LwaInvalidResponse("invalid_response", "answer has no refresh_token", status=200)
        return tokens

    def refresh_access_token(self, *, refresh_token: str, client_id: str, client_secret: str) -> LwaTokens:
        """A stored refresh token → a fresh access token (valid `expires_in` seconds, usually 3600)."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        return self._post(form, secrets=(refresh_token, client_secret))

    def _post(self, form: dict[str, str], *, secrets: tuple[str, ...]) -> LwaTokens:
        grant = form["grant_type"]
        try:
            response = self.session.post(self.token_url, data=form, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise LwaUnavailable("timeout", f"no answer within {self.timeout:g}s") from None
        except requests.exceptions.RetryError:
            raise LwaUnavailable("server_error", "still failing after retries") from None
        except requests.exceptions.ConnectionError:
            raise LwaUnavailable("connection_error", "token endpoint unreachable") from None
        except requests.exceptions.RequestException as exc:
            raise LwaUnavailable("connection_error", type(exc).__name__) from None

        body = _json(response)
        if response.status_code != 200:
            error = body.get("error") if isinstance(body.get("error"), str) else ""
            description = _scrub(body.get("error_description", ""), secrets) if body else ""
            if 400 <= response.status_code < 500:
                raise LwaRejected(error or f"http_{response.status_code}", description, status=response.status_code)
            raise LwaUnavailable(error or "server_error", description, status=response.status_code)

        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise LwaInvalidResponse("invalid_response", "answer has no access_token", status=200)
        try:
            expires_in = int(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            raise LwaInvalidResponse("invalid_response", "expires_in is not a number", status=200) from None
        refresh_token = body.get("refresh_token")
        logger.debug("LWA %s grant succeeded (token valid %ss)", grant, expires_in)
        return LwaTokens(
            access_token=access_token,
            token_type=str(body.get("token_type", "bearer")),
            expires_in=expires_in,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        if response.status_code == 200:
            raise LwaInvalidResponse("invalid_response", "answer is not JSON", status=200) from None
        return {}
    if not isinstance(body, dict):
        if response.status_code == 200:
            raise LwaInvalidResponse("invalid_response", "answer is not a JSON object", status=200)
        return {}
    return body


# --- Configured instance ----------------------------------------------------------------------

_client: LwaClient | None = None
_client_lock = threading.Lock()


def get_lwa_client() -> LwaClient:
    """The process-wide client (its session pools connections to Amazon)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = LwaClient(
                token_url=settings.AMAZON_LWA_TOKEN_URL,
                timeout=settings.AMAZON_HTTP_TIMEOUT,
                retries=settings.AMAZON_HTTP_RETRIES,
            )
        return _client


@receiver(setting_changed)
def _reset_client(*, setting: str, **kwargs: Any) -> None:
    global _client
    if setting.startswith(("AMAZON_LWA_", "AMAZON_HTTP_")):
        with _client_lock:
            _client = None


def exchange_authorization_code(
    *, code: str, client_id: str, client_secret: str, redirect_uri: str = "", token_url: str | None = None
) -> LwaTokens:
    """Module-level shortcut; `token_url` overrides the endpoint (the local fake in mock mode)."""
    client = get_lwa_client()
    if token_url and token_url != client.token_url:
        client = LwaClient(token_url=token_url, timeout=client.timeout, retries=0, trust_env=False)
    return client.exchange_authorization_code(
        code=code, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri
    )
