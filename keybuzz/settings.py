"""KeyBuzz settings: one module, read from the environment (django-environ).

Development defaults (SQLite, the local encrypted secret store, DEBUG) apply only when nothing is
configured. Once an env file is loaded or DEBUG is turned off, the production variables are
required and a missing one stops start-up with one line naming it (see `manage.py`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Generic Django classes (admin.ModelAdmin[Ticket], …) subscriptable at run time, for type hints.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# The runbook loads `.env.production` by hand (`export $(cat .env.production | …)`); reading it
# here makes that optional. Variables already in the environment win over the file.
_env_file = os.environ.get("KEYBUZZ_ENV_FILE", "")
if _env_file == "none":  # the test runner's way to ignore a developer's local .env.production
    ENV_FILE_LOADED = ""
elif _env_file:
    if not Path(_env_file).is_file():
        raise ImproperlyConfigured(f"KEYBUZZ_ENV_FILE points to a missing file: {_env_file}")
    environ.Env.read_env(_env_file, overwrite=False)
    ENV_FILE_LOADED = _env_file
elif (BASE_DIR / ".env.production").is_file():
    environ.Env.read_env(BASE_DIR / ".env.production", overwrite=False)
    ENV_FILE_LOADED = str(BASE_DIR / ".env.production")
else:
    ENV_FILE_LOADED = ""

# A configured deployment (an env file) defaults to production mode; a bare checkout to development.
DEBUG = env.bool("DEBUG", default=not ENV_FILE_LOADED)


def _required(name: str, why: str = "required when DEBUG is off") -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} is not set ({why}); see .env.production.example")
    return value


# --- Core -------------------------------------------------------------------------------------
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="django-insecure-keybuzz-development-only-key")
else:
    SECRET_KEY = _required("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "keybuzz.apps.SuperadminAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "axes",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # The layers, lowest first (docs/architecture.md): each may use the ones above it in this list.
    "keybuzz",
    "tickets",
    "marketplaces",
    "operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Answers the web app's cross-origin calls to the API (CORS_* below) before anything else.
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a locked-out login (API or admin) into 429 too_many_attempts (keybuzz/throttling.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "keybuzz.urls"
WSGI_APPLICATION = "keybuzz.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
VAR_DIR = Path(env.str("KEYBUZZ_VAR_DIR", default=str(BASE_DIR / "var")))
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
elif DEBUG:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"}}
else:
    _required("DATABASE_URL")
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=None)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that asks the socket before it asks the server
    # (keybuzz/backends/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "keybuzz.backends.postgresql"
if "postgresql" in DATABASES["default"]["ENGINE"]:
    # PostgreSQL's JIT compiles "expensive-looking" plans: on the inbox's queries it cost up to a
    # second per query at a million tickets and saved nothing (benchmarks/api_load.py). Off for
    # KeyBuzz's sessions only; DATABASE_PG_JIT=true turns it back on.
    if not env.bool("DATABASE_PG_JIT", default=False):
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
    # Django turns psycopg's automatic prepared statements off. Its own cursors bind values in the SQL
    # text and are never prepared anyway; keybuzz.db.read_cursor's bind on the server, and a query it
    # runs five times on a connection becomes a prepared statement PostgreSQL stops planning (the
    # ticket page: 0.35 ms instead of 0.65 ms planned each time). 0 turns it off.
    _threshold = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = _threshold or None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Secret store -----------------------------------------------------------------------------
VAULT_ADDR = env.str("VAULT_ADDR", default="")
VAULT_TOKEN = env.str("VAULT_TOKEN", default="")
VAULT_ROLE_ID = env.str("VAULT_ROLE_ID", default="")
VAULT_SECRET_ID = env.str("VAULT_SECRET_ID", default="")
VAULT_APPROLE_MOUNT = env.str("VAULT_APPROLE_MOUNT", default="approle")
VAULT_MOUNT = env.str("VAULT_MOUNT", default="secret")
VAULT_NAMESPACE = env.str("VAULT_NAMESPACE", default="")
VAULT_CACERT = env.str("VAULT_CACERT", default="")
VAULT_TIMEOUT = env.float("VAULT_TIMEOUT", default=5.0)

SECRETS_BACKEND = env.str("SECRETS_BACKEND", default="vault" if VAULT_ADDR else ("local" if DEBUG else ""))
SECRETS_LOCAL_PATH = env.str("SECRETS_LOCAL_PATH", default=str(VAR_DIR / "secrets.json"))
SECRETS_LOCAL_KEY = env.str("SECRETS_LOCAL_KEY", default="")

if SECRETS_BACKEND not in {"vault", "local"}:
    raise ImproperlyConfigured(
        "VAULT_ADDR is not set (a secret store is required when DEBUG is off); see .env.production.example"
        if not SECRETS_BACKEND
        else f"SECRETS_BACKEND must be 'vault' or 'local', not {SECRETS_BACKEND!r}"
    )
if SECRETS_BACKEND == "vault":
    _required("VAULT_ADDR", "required by SECRETS_BACKEND=vault")
    if not VAULT_TOKEN and not (VAULT_ROLE_ID and VAULT_SECRET_ID):
        raise ImproperlyConfigured(
            "VAULT_TOKEN is not set (or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole); see .env.production.example"
        )
elif not DEBUG:
    # The local store is allowed in production only when asked for with an explicit key.
    _required("SECRETS_LOCAL_KEY", "required by SECRETS_BACKEND=local when DEBUG is off")

# --- Auth and JWT -----------------------------------------------------------------------------
JWT_SECRET = env.str("JWT_SECRET", default="") if DEBUG else _required("JWT_SECRET")
if not JWT_SECRET:
    JWT_SECRET = "keybuzz-development-jwt-secret-not-for-production"

SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_TOKEN_MINUTES", default=30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_TOKEN_DAYS", default=7)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
    # A refresh token is used once: refreshing answers a new one and blacklists the old
    # (rest_framework_simplejwt.token_blacklist).
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

# --- Login throttling (django-axes: the API's POST /auth/token and the admin's login) -------------
# Failed logins are counted per account and, separately, per client address, in the database (so
# every gunicorn worker and host shares the count); at LOGIN_FAILURE_LIMIT the account or address
# is locked for LOGIN_LOCKOUT_MINUTES (429 too_many_attempts with Retry-After). A superadmin
# unlocks at once by deleting the "Access attempts" rows in the admin (or `manage.py axes_reset`).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "keybuzz.throttling.lockout_response"
AXES_VERBOSE = False  # axes logs the username and address of each failure; our lines say enough
# The client's address (keybuzz.throttling.client_address): each proxy in front appends the address
# it saw to X-Forwarded-For; only the last TRUSTED_PROXY_COUNT hops are trusted (1 behind the
# deployed nginx, 0 when clients connect to gunicorn directly).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0 if DEBUG else 1)
AXES_CLIENT_IP_CALLABLE = "keybuzz.throttling.client_address"

KEYBUZZ_SUPERADMIN_USERNAME = env.str("KEYBUZZ_SUPERADMIN_USERNAME", default="superadmin")
KEYBUZZ_SUPERADMIN_EMAIL = env.str("KEYBUZZ_SUPERADMIN_EMAIL", default="superadmin@localhost")
KEYBUZZ_SUPERADMIN_PASSWORD = env.str("KEYBUZZ_SUPERADMIN_PASSWORD", default="")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Integrations (used by the marketplaces app) -------------------------------------------------
FRONTEND_URL = env.str("FRONTEND_URL", default="")
# The web app calls the API from FRONTEND_URL's origin, with credentials (the OAuth start sets
# the browser-binding cookie): CORS answers exactly that origin, and only under /api/.
CORS_ALLOWED_ORIGINS = [
    f"{_origin.scheme}://{_origin.netloc}" for _origin in [urlsplit(FRONTEND_URL)] if _origin.scheme and _origin.netloc
]
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/api/.*$"
KEYBUZZ_AI_API_KEY = env.str("KEYBUZZ_AI_API_KEY", default="")
# The LiteLLM gateway (keybuzz/ai/client.py): its OpenAI-style base URL (requests go to
# {base}/chat/completions; empty: AI is not configured and its endpoints answer 503), the model it
# routes, the time budget of one call (retries included; below gunicorn's timeout), and how many
# calls one tenant may make per UTC day. The key: KEYBUZZ_AI_API_KEY, else the secret keybuzz/ai/litellm.
KEYBUZZ_AI_BASE_URL = env.str("KEYBUZZ_AI_BASE_URL", default="")
KEYBUZZ_AI_MODEL = env.str("KEYBUZZ_AI_MODEL", default="gpt-4o-mini")
KEYBUZZ_AI_TIMEOUT_SECONDS = env.float("KEYBUZZ_AI_TIMEOUT_SECONDS", default=30.0)
KEYBUZZ_AI_DAILY_LIMIT = env.int("KEYBUZZ_AI_DAILY_LIMIT", default=500)
AMAZON_SPAPI_APP_SOURCE = env.str("AMAZON_SPAPI_APP_SOURCE", default="external_test")
AMAZON_USE_MOCK = env.bool("AMAZON_USE_MOCK", default=False)
# The SP-API app: when AMAZON_SPAPI_CLIENT_ID/SECRET/APPLICATION_ID are set they are used, else the
# secret store's keybuzz/ai/amazon_spapi_app_temp (external_test) or keybuzz/ai/amazon_spapi_app (keybuzz).
AMAZON_SPAPI_CLIENT_ID = env.str("AMAZON_SPAPI_CLIENT_ID", default="")
AMAZON_SPAPI_CLIENT_SECRET = env.str("AMAZON_SPAPI_CLIENT_SECRET", default="")
AMAZON_SPAPI_APPLICATION_ID = env.str("AMAZON_SPAPI_APPLICATION_ID", default="")
AMAZON_SPAPI_REDIRECT_URI = env.str("AMAZON_SPAPI_REDIRECT_URI", default="")
AMAZON_SPAPI_REGION = env.str("AMAZON_SPAPI_REGION", default="")  # NA | EU | FE, or us-east-1 | eu-west-1 | us-west-2
AMAZON_SPAPI_DRAFT_APP = env.str("AMAZON_SPAPI_DRAFT_APP", default="")  # "true": consent URLs get version=beta
AMAZON_OAUTH_STATE_TTL = env.int("AMAZON_OAUTH_STATE_TTL", default=15 * 60)  # seconds
AMAZON_OAUTH_RETURN_URL = env.str("AMAZON_OAUTH_RETURN_URL", default="")  # default: FRONTEND_URL
AMAZON_LWA_TOKEN_URL = env.str("AMAZON_LWA_TOKEN_URL", default="https://api.amazon.com/auth/o2/token")
AMAZON_HTTP_TIMEOUT = env.float("AMAZON_HTTP_TIMEOUT", default=10.0)  # seconds, per request
AMAZON_HTTP_RETRIES = env.int("AMAZON_HTTP_RETRIES", default=2)  # on 5xx and connection failures

# --- REST framework and OpenAPI ---------------------------------------------------------------
_RENDERERS = ["keybuzz.renderers.JSONRenderer"]  # DRF's JSON, written by orjson
if DEBUG:
    _RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keybuzz.authentication.TenantJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["keybuzz.permissions.IsTenantMember"],
    "DEFAULT_RENDERER_CLASSES": _RENDERERS,
    "DEFAULT_PARSER_CLASSES": ["keybuzz.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "keybuzz.exception_handler.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "KeyBuzz API",
    "DESCRIPTION": "Customer service for marketplace sellers: tenants, Amazon connections, tickets.",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    # Swagger UI's assets are served from this server (no CDN): the docs work offline too.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "keybuzz.openapi.document_constraints",
    ],
}

# --- Security (production) --------------------------------------------------------------------
# TLS ends at nginx (deploy/nginx-keybuzz.conf), which also redirects http to https, so Django
# trusts its X-Forwarded-Proto header and does not redirect by itself: the runbook's
# `curl http://localhost:4000/health` must keep answering on the loopback.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if not SECURE_SSL_REDIRECT:
    SILENCED_SYSTEM_CHECKS = ["security.W008"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- I18n, static -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
# Attachments (buyers' photos, agents' files) go through Django's storage API: MEDIA_ROOT by
# default (one host, or a shared volume); S3-compatible object storage (AWS, MinIO, Ceph, Scaleway,
# OVH…) when ATTACHMENTS_S3_BUCKET is set, which several hosts share (keybuzz/storage.py).
# Never served by the web server nor by a bucket URL: only the tickets API hands a file to a member
# of its tenant. Credentials: ATTACHMENTS_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY, or the secret store
# at ATTACHMENTS_S3_CREDENTIALS_PATH, or neither for boto3's own chain (an instance role, AWS_*
# variables, a shared credentials file).
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
from keybuzz.storage import S3Options as _S3Options  # noqa: E402
from keybuzz.storage import storages_setting as _storages_setting  # noqa: E402

ATTACHMENTS_S3_BUCKET = env.str("ATTACHMENTS_S3_BUCKET", default="").strip()
_ATTACHMENTS_S3: _S3Options | None = None
if ATTACHMENTS_S3_BUCKET:
    _s3_access_key_id = env.str("ATTACHMENTS_S3_ACCESS_KEY_ID", default="")
    _s3_secret_access_key = env.str("ATTACHMENTS_S3_SECRET_ACCESS_KEY", default="")
    # Or the key pair in the secret store (keys access_key_id, secret_access_key), e.g. at
    # keybuzz/storage/attachments_s3.
    _s3_credentials_path = env.str("ATTACHMENTS_S3_CREDENTIALS_PATH", default="").strip("/")
    if bool(_s3_access_key_id) != bool(_s3_secret_access_key):
        raise ImproperlyConfigured(
            "ATTACHMENTS_S3_ACCESS_KEY_ID and ATTACHMENTS_S3_SECRET_ACCESS_KEY go together: set both, or neither "
            "(boto3's own credentials: an instance role, AWS_* variables)"
        )
    if _s3_credentials_path and _s3_access_key_id:
        raise ImproperlyConfigured(
            "ATTACHMENTS_S3_CREDENTIALS_PATH (the secret store) and ATTACHMENTS_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY "
            "(the environment) are two ways to give the same key pair: set one"
        )
    _s3_ca_bundle = env.str("ATTACHMENTS_S3_CA_BUNDLE", default="")
    _ATTACHMENTS_S3 = _S3Options(
        bucket=ATTACHMENTS_S3_BUCKET,
        endpoint_url=env.str("ATTACHMENTS_S3_ENDPOINT_URL", default=""),
        region=env.str("ATTACHMENTS_S3_REGION", default=""),
        prefix=env.str("ATTACHMENTS_S3_PREFIX", default=""),
        access_key_id=_s3_access_key_id,
        secret_access_key=_s3_secret_access_key,
        credentials_path=_s3_credentials_path,
        server_side_encryption=env.str("ATTACHMENTS_S3_SSE", default=""),
        kms_key_id=env.str("ATTACHMENTS_S3_SSE_KMS_KEY_ID", default=""),
        verify=_s3_ca_bundle or True,
        timeout_seconds=env.float("ATTACHMENTS_S3_TIMEOUT", default=5.0),
    )
STORAGES = _storages_setting(s3=_ATTACHMENTS_S3)

# --- Logging ----------------------------------------------------------------------------------
# One line per event on stderr (journald for the service, the log file for cron jobs): time, level,
# logger, tenant and connection ids, message; LOG_FORMAT=json for JSON lines. Secret-shaped values
# are masked on the way out (keybuzz/logging.py).
from keybuzz.logging import FORMATS as _LOG_FORMATS  # noqa: E402
from keybuzz.logging import logging_config as _logging_config  # noqa: E402

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="line").strip().lower()
if LOG_FORMAT not in _LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(_LOG_FORMATS)}, not {LOG_FORMAT!r}")
LOGGING = _logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
# Every request starts with no tenant in the log context (a worker thread serves many tenants).
MIDDLEWARE = ["keybuzz.logging.LogContextMiddleware", *MIDDLEWARE]

KEYBUZZ_VERSION = env.str("KEYBUZZ_VERSION", default="")

# --- Tickets ----------------------------------------------------------------------------------
# The agents' API (tickets app): reply size, the list's page size, and the send_replies worker.
TICKETS_REPLY_MAX_LENGTH = env.int("TICKETS_REPLY_MAX_LENGTH", default=10_000)
TICKETS_PAGE_SIZE = env.int("TICKETS_PAGE_SIZE", default=25)
TICKETS_PAGE_SIZE_MAX = env.int("TICKETS_PAGE_SIZE_MAX", default=100)
# A reply's delivery is tried up to MAX_ATTEMPTS times, waiting BACKOFF * 2^(attempt-1) seconds
# (capped) between attempts; then it is FAILED with the last reason.
TICKETS_SEND_MAX_ATTEMPTS = env.int("TICKETS_SEND_MAX_ATTEMPTS", default=5)
TICKETS_SEND_BACKOFF_SECONDS = env.int("TICKETS_SEND_BACKOFF_SECONDS", default=60)
TICKETS_SEND_BACKOFF_MAX_SECONDS = env.int("TICKETS_SEND_BACKOFF_MAX_SECONDS", default=3600)
# How long a worker holds a claimed reply; a crashed worker's replies are retried after it.
# Must stay well above a channel adapter's own network timeout.
TICKETS_SEND_LEASE_SECONDS = env.int("TICKETS_SEND_LEASE_SECONDS", default=300)
# A run sends at most BATCH_SIZE replies (`--limit`), leasing them CLAIM_BATCH at a time and
# claiming again as it goes: several sender hosts started together all get a share of the queue.
TICKETS_SEND_BATCH_SIZE = env.int("TICKETS_SEND_BATCH_SIZE", default=100)
TICKETS_SEND_CLAIM_BATCH = env.int("TICKETS_SEND_CLAIM_BATCH", default=10)
# Dotted path of the real Amazon reply adapter (the relay-mailbox work plugs it in here). Empty and
# AMAZON_USE_MOCK off: Amazon replies fail with "No Amazon sender configured".
TICKETS_AMAZON_ADAPTER = env.str("TICKETS_AMAZON_ADAPTER", default="")
# Agents' files for replies: largest accepted, how many one reply may carry, and how long an upload
# no reply took is kept (send_replies deletes it after that).
TICKETS_UPLOAD_MAX_BYTES = env.int("TICKETS_UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)
TICKETS_REPLY_MAX_ATTACHMENTS = env.int("TICKETS_REPLY_MAX_ATTACHMENTS", default=5)
TICKETS_UPLOAD_KEEP_HOURS = env.int("TICKETS_UPLOAD_KEEP_HOURS", default=24)
# Stable OpenAPI names for the tickets API's enums (several serializers share a field named "status").
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "TicketStatusEnum": "tickets.models.TicketStatus",
    "TicketMessageTypeEnum": ["reply", "note"],
}

# --- Poller (marketplaces.polling, `manage.py poll_amazon`) ------------------------------------
# A connection with a relay mailbox is always read over IMAP. The others are read by this source (a
# dotted path to a MessageSource class) when set, else by the mock when AMAZON_USE_MOCK is on, else
# not at all (they wait for a mailbox).
AMAZON_MESSAGE_SOURCE = env.str("AMAZON_MESSAGE_SOURCE", default="")
# A connection is polled at most once per interval; failures back off exponentially from BASE
# seconds up to MAX. A claimed connection is leased for LEASE seconds: a killed worker's
# connections are polled again once it runs out.
AMAZON_POLL_INTERVAL_SECONDS = env.int("AMAZON_POLL_INTERVAL_SECONDS", default=60)
AMAZON_POLL_BACKOFF_BASE_SECONDS = env.int("AMAZON_POLL_BACKOFF_BASE_SECONDS", default=300)
AMAZON_POLL_BACKOFF_MAX_SECONDS = env.int("AMAZON_POLL_BACKOFF_MAX_SECONDS", default=6 * 3600)
AMAZON_POLL_LEASE_SECONDS = env.int("AMAZON_POLL_LEASE_SECONDS", default=600)
# WORKERS: connections polled at once by one run (threads, which mostly wait on the network; always
# 1 on SQLite). DB_CONNECTIONS: the database connections they share, the most a run ever holds
# (each poller process running at once holds its own: keep pollers x DB_CONNECTIONS, plus the web
# workers' connections, under PostgreSQL's max_connections, 100 by default). CLAIM_BATCH:
# connections leased per claim (small enough that concurrent pollers share the work evenly).
# 48 threads on 6 connections poll 10,000 connections whose fetch takes 100 ms in 32 to 36 s on
# 2 cores; 32 on 4 took 42 s, 64 on 8 no less than 48 on 6 (benchmarks/poll_scale.py).
AMAZON_POLL_WORKERS = env.int("AMAZON_POLL_WORKERS", default=48)
AMAZON_POLL_DB_CONNECTIONS = env.int("AMAZON_POLL_DB_CONNECTIONS", default=6)
AMAZON_POLL_CLAIM_BATCH = env.int("AMAZON_POLL_CLAIM_BATCH", default=20)
# The relay mailbox (IMAP): mails read per connection and run (the rest on the next runs), how many
# days of history the first read files (older mails are counted as skipped_old), the network
# timeout, the CA file that verifies the server (empty: the system's CA store), the largest mail
# read at all (a bigger one is quarantined) and the largest attachment kept (bigger ones are
# listed on the message as skipped).
AMAZON_MAILBOX_BATCH = env.int("AMAZON_MAILBOX_BATCH", default=200)
AMAZON_MAILBOX_BACKFILL_DAYS = env.int("AMAZON_MAILBOX_BACKFILL_DAYS", default=14)
AMAZON_MAILBOX_TIMEOUT = env.float("AMAZON_MAILBOX_TIMEOUT", default=30.0)
AMAZON_MAILBOX_CA_FILE = env.str("AMAZON_MAILBOX_CA_FILE", default="")
AMAZON_MAILBOX_MAX_MAIL_BYTES = env.int("AMAZON_MAILBOX_MAX_MAIL_BYTES", default=50 * 1024 * 1024)
# Mail servers on loopback or private addresses are refused unless this is on (a server on the same
# host or network): otherwise a seller could make KeyBuzz probe its internal network.
AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS = env.bool("AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS", default=False)
# Processes that parse relay mails (pure Python: threads would share one core); 0 parses in the
# poller's threads. Default: one per core, none on a single core.
_CORES = os.cpu_count() or 1
AMAZON_MAILBOX_PARSE_PROCESSES = env.int("AMAZON_MAILBOX_PARSE_PROCESSES", default=_CORES if _CORES > 1 else 0)
AMAZON_ATTACHMENT_MAX_BYTES = env.int("AMAZON_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
# --- Order context (SP-API, `manage.py sync_orders`) ----------------------------------------------
# An open ticket's order is fetched again when its context is older than REFRESH hours; an order
# Amazon does not know yet (or a failed call) is retried after RETRY_BASE seconds, doubling up to
# RETRY_MAX. A run fetches at most BATCH orders and leases each for LEASE seconds. ENDPOINT replaces
# the region's SP-API host (a local fake); empty: https://sellingpartnerapi-<na|eu|fe>.amazon.com.
AMAZON_ORDER_REFRESH_HOURS = env.int("AMAZON_ORDER_REFRESH_HOURS", default=6)
AMAZON_ORDER_RETRY_BASE_SECONDS = env.int("AMAZON_ORDER_RETRY_BASE_SECONDS", default=600)
AMAZON_ORDER_RETRY_MAX_SECONDS = env.int("AMAZON_ORDER_RETRY_MAX_SECONDS", default=6 * 3600)
AMAZON_ORDER_BATCH = env.int("AMAZON_ORDER_BATCH", default=100)
# Orders leased per claim within a run (of at most AMAZON_ORDER_BATCH): small, so that several
# sync_orders hosts started together all get a share.
AMAZON_ORDER_CLAIM_BATCH = env.int("AMAZON_ORDER_CLAIM_BATCH", default=10)
AMAZON_ORDER_LEASE_SECONDS = env.int("AMAZON_ORDER_LEASE_SECONDS", default=300)
AMAZON_SPAPI_ENDPOINT = env.str("AMAZON_SPAPI_ENDPOINT", default="")
AMAZON_SPAPI_TIMEOUT = env.float("AMAZON_SPAPI_TIMEOUT", default=15.0)
# The mock: messages per poll window (3 gives the runbook's 3/3/3 check) and the window length.
AMAZON_MOCK_MESSAGES_PER_POLL = env.int("AMAZON_MOCK_MESSAGES_PER_POLL", default=3)
AMAZON_MOCK_WINDOW_SECONDS = env.int("AMAZON_MOCK_WINDOW_SECONDS", default=300)

# --- Metrics (operations: `keybuzz_metrics`, GET /metrics, /admin/dashboard/) ----------------
# Bearer token Prometheus sends to GET /metrics; empty disables the endpoint (it answers 404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# A poller with no run, or an active connection not polled, for this many seconds is shown as
# stalled on the dashboard and in `keybuzz_metrics` (3 cron periods of 5 minutes).
METRICS_POLL_STALE_SECONDS = env.int("METRICS_POLL_STALE_SECONDS", default=900)
