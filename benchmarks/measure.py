"""What the benchmarks share: peak memory, their own PostgreSQL database, the product's settings."""

from __future__ import annotations


def rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ensure_database(url: str) -> None:
    """Creates the database of `url` when it does not exist."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def product_env(*, database_url: str, secrets_path: str = "") -> dict[str, str]:
    """The environment a benchmark runs the product with: production-like (DEBUG off), throwaway
    keys, a local secret store (in `secrets_path`, else the default one), the mock Amazon app; the
    caller adds its own."""
    env = {
        "DJANGO_SETTINGS_MODULE": "keybuzz.settings",
        "KEYBUZZ_ENV_FILE": "none",
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "benchmark-" + "x" * 50,
        "JWT_SECRET": "benchmark-jwt-secret-0123456789",
        "SECRETS_BACKEND": "local",
        "SECRETS_LOCAL_KEY": "0" * 43 + "=",
        "DATABASE_URL": database_url,
        "AMAZON_USE_MOCK": "true",
        "AMAZON_SPAPI_APP_SOURCE": "external_test",
    }
    if secrets_path:
        env["SECRETS_LOCAL_PATH"] = secrets_path
    return env
