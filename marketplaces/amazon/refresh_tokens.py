"""A seller's LWA refresh token in the secret store: where it lives, and the only code that writes,
reads or deletes it.

One secret per tenant and seller, at `keybuzz/tenants/<tenant id>/amazon/<seller id>`; the
connection row keeps only that path (`secret_ref`). The token never reaches the database, a log,
an error message or an API answer. Errors are the secret store's own (`keybuzz.secrets`), plus
`RefreshTokenMissing` when the store answers but holds no usable token.
"""

from __future__ import annotations

from django.utils import timezone

from keybuzz.secrets import SecretNotFound, get_secret_store


class RefreshTokenMissing(Exception):
    """Nothing usable at the path: only a new OAuth consent brings a token back. `str()` names the path."""


def refresh_token_path(*, tenant_id: object, selling_partner_id: str) -> str:
    return f"keybuzz/tenants/{tenant_id}/amazon/{selling_partner_id}"


def refresh_token_store(
    *, path: str, refresh_token: str, selling_partner_id: str, app_source: str, region: str
) -> None:
    """Writes (or replaces) the seller's token. Raises SecretStoreError."""
    get_secret_store().write(
        path,
        {
            "refresh_token": refresh_token,
            "selling_partner_id": selling_partner_id,
            "app_source": app_source,
            "region": region,
            "obtained_at": timezone.now().isoformat(),
        },
    )


def refresh_token_read(path: str) -> str:
    """The token at `path`. Raises RefreshTokenMissing, or SecretStoreError (store down, refused)."""
    try:
        data = get_secret_store().read(path)
    except SecretNotFound as exc:
        raise RefreshTokenMissing(str(exc)) from None
    token = data.get("refresh_token")
    if not isinstance(token, str) or not token:
        raise RefreshTokenMissing(f"no refresh_token at {path}")
    return token


def refresh_token_delete(path: str) -> None:
    """Removes the token (a missing one is not an error). Raises SecretStoreError."""
    get_secret_store().delete(path)
