"""The SP-API app KeyBuzz authorizes sellers for: its LWA credentials and consent parameters.

Where they come from (docs/amazon.md, "Changing app"):
1. the `AMAZON_SPAPI_*` env variables, when any of client id / client secret / application id is
   set (then all three must be);
2. else the secret store, at `keybuzz/ai/amazon_spapi_app_temp` when
   `AMAZON_SPAPI_APP_SOURCE=external_test` (the default) or `keybuzz/ai/amazon_spapi_app` when
   `keybuzz`.
Nothing usable → `AppCredentialsMissing` ("No credentials found: <where>"): the operator must
configure the app. The secret store failing → `AppCredentialsUnavailable`: retry later.

Credentials are read at most once per request (callers pass the `AmazonApp` along) and never logged:
the client secret is kept out of `repr()`, and error messages name paths and keys, never values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from keybuzz.secrets import SecretAccessDenied, SecretNotFound, SecretStoreError, get_secret_store
from marketplaces.amazon.regions import NA, UnknownRegion, normalize_region

APP_SECRET_PATHS = {
    "external_test": "keybuzz/ai/amazon_spapi_app_temp",
    "keybuzz": "keybuzz/ai/amazon_spapi_app",
}

_TRUE = {"1", "true", "yes", "on", "beta", "draft"}
_FALSE = {"", "0", "false", "no", "off", "published"}

# Built-in app of the local fake Amazon (DEBUG + AMAZON_USE_MOCK only).
MOCK_CLIENT_ID = "amzn1.application-oa2-client.keybuzz-mock"
# Only the local fake token endpoint accepts it.
MOCK_CLIENT_SECRET = "keybuzz-mock-client-secret"
MOCK_APPLICATION_ID = "amzn1.sp.solution.keybuzz-mock"


class AppCredentialsError(Exception):
    """The SP-API app's credentials cannot be used now; `str()` names paths and keys, never values."""


class AppCredentialsMissing(AppCredentialsError):
    """Not configured, or incomplete: "No credentials found: <where>"."""


class AppCredentialsUnavailable(AppCredentialsError):
    """The secret store holding them could not be read (down, sealed, timed out)."""


@dataclass(frozen=True)
class AmazonApp:
    client_id: str
    client_secret: str = field(repr=False)
    application_id: str
    app_source: str
    region: str = NA
    redirect_uri: str = ""
    draft: bool = False
    origin: str = "env"  # "env", the secret store path, or "mock"; for messages, never a value
    lwa_token_url: str = ""  # empty: settings.AMAZON_LWA_TOKEN_URL

    @property
    def is_mock(self) -> bool:
        return self.origin == "mock"


def mock_enabled() -> bool:
    """The local fake Amazon (consent page, token endpoint) exists only with DEBUG on."""
    return bool(settings.DEBUG and settings.AMAZON_USE_MOCK)


def app_secret_path(app_source: str | None = None) -> str:
    source = app_source if app_source is not None else settings.AMAZON_SPAPI_APP_SOURCE
    try:
        return APP_SECRET_PATHS[source]
    except KeyError:
        raise AppCredentialsMissing(
            f"No credentials found: AMAZON_SPAPI_APP_SOURCE={source!r} is not one of "
            f"{', '.join(sorted(APP_SECRET_PATHS))}"
        ) from None


def _flag(value: Any, where: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise AppCredentialsMissing(f"No credentials found: {where} must be true or false")


def _region(value: str, where: str) -> str:
    if not value:
        return NA  # Amazon's default, and the host the runbook's step 3 expects
    try:
        return normalize_region(value)
    except UnknownRegion as exc:
        raise AppCredentialsMissing(f"No credentials found: {where}: {exc}") from None


def _from_env() -> AmazonApp | None:
    values = {
        "AMAZON_SPAPI_CLIENT_ID": settings.AMAZON_SPAPI_CLIENT_ID,
        "AMAZON_SPAPI_CLIENT_SECRET": settings.AMAZON_SPAPI_CLIENT_SECRET,
        "AMAZON_SPAPI_APPLICATION_ID": settings.AMAZON_SPAPI_APPLICATION_ID,
    }
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise AppCredentialsMissing(
            f"No credentials found: {', '.join(missing)} not set (the other AMAZON_SPAPI_* variables are)"
        )
    return AmazonApp(
        client_id=settings.AMAZON_SPAPI_CLIENT_ID,
        client_secret=settings.AMAZON_SPAPI_CLIENT_SECRET,
        application_id=settings.AMAZON_SPAPI_APPLICATION_ID,
        app_source=settings.AMAZON_SPAPI_APP_SOURCE,
        region=_region(settings.AMAZON_SPAPI_REGION, "AMAZON_SPAPI_REGION"),
        redirect_uri=settings.AMAZON_SPAPI_REDIRECT_URI,
        draft=_flag(settings.AMAZON_SPAPI_DRAFT_APP, "AMAZON_SPAPI_DRAFT_APP"),
        origin="env",
    )


def _from_store(path: str) -> AmazonApp:
    try:
        data = get_secret_store().read(path)
    except SecretNotFound:
        raise AppCredentialsMissing(f"No credentials found: {path}") from None
    except SecretAccessDenied:
        raise AppCredentialsMissing(
            f"No credentials found: {path} (the secret store refused access: check VAULT_TOKEN and its policy)"
        ) from None
    except SecretStoreError as exc:
        raise AppCredentialsUnavailable(f"No credentials found: {path} ({exc})") from None

    def pick(*keys: str) -> str:
        for key in keys:
            value = data.get(key)
            if value not in (None, ""):
                return str(value).strip()
        return ""

    client_id = pick("client_id", "lwa_client_id")
    client_secret = pick("client_secret", "lwa_client_secret")
    application_id = pick("application_id", "app_id")
    missing = [
        key
        for key, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("application_id", application_id),
        )
        if not value
    ]
    if missing:
        raise AppCredentialsMissing(f"No credentials found: {path} has no {', '.join(missing)}")
    # An explicit env setting wins over the stored one for the two consent details.
    draft_setting = settings.AMAZON_SPAPI_DRAFT_APP
    draft = (
        _flag(draft_setting, "AMAZON_SPAPI_DRAFT_APP")
        if draft_setting
        else _flag(pick("draft", "is_draft", "version"), f"{path} draft")
    )
    return AmazonApp(
        client_id=client_id,
        client_secret=client_secret,
        application_id=application_id,
        app_source=settings.AMAZON_SPAPI_APP_SOURCE,
        region=_region(settings.AMAZON_SPAPI_REGION or pick("region"), f"{path} region"),
        redirect_uri=settings.AMAZON_SPAPI_REDIRECT_URI or pick("redirect_uri"),
        draft=draft,
        origin=path,
    )


def mock_app(*, token_url: str, redirect_uri: str) -> AmazonApp:
    return AmazonApp(
        client_id=MOCK_CLIENT_ID,
        client_secret=MOCK_CLIENT_SECRET,
        application_id=MOCK_APPLICATION_ID,
        app_source=settings.AMAZON_SPAPI_APP_SOURCE,
        region=_region(settings.AMAZON_SPAPI_REGION, "region"),
        redirect_uri=redirect_uri,
        draft=True,
        origin="mock",
        lwa_token_url=token_url,
    )


def load_app_credentials() -> AmazonApp:
    """The configured app (env first, then the secret store). Raises AppCredentialsError."""
    app = _from_env()
    if app is not None:
        return app
    return _from_store(app_secret_path())
