"""Mailbox passwords in the secret store: their paths, and the only code that writes, reads or
deletes them. One secret per connection and protocol, at
`keybuzz/tenants/<tenant id>/mailbox/<connection id>/<protocol>`; the Mailbox row holds only the
path. A password never reaches the database, a log, an error message or an API answer."""

from __future__ import annotations

from keybuzz.secrets import SecretNotFound, get_secret_store


class MailboxPasswordMissing(Exception):
    """Nothing usable at the path: the seller must enter the password again. `str()` names the path."""


def mailbox_password_path(*, tenant_id: object, connection_id: object, protocol: str) -> str:
    return f"keybuzz/tenants/{tenant_id}/mailbox/{connection_id}/{protocol}"


def mailbox_password_store(*, path: str, password: str) -> None:
    """Raises SecretStoreError."""
    get_secret_store().write(path, {"password": password})


def mailbox_password_read(path: str) -> str:
    """Raises MailboxPasswordMissing, or SecretStoreError."""
    try:
        data = get_secret_store().read(path)
    except SecretNotFound as exc:
        raise MailboxPasswordMissing(str(exc)) from None
    password = data.get("password")
    if not isinstance(password, str):
        raise MailboxPasswordMissing(f"No password at {path}")
    return password


def mailbox_password_delete(path: str) -> None:
    """Raises SecretStoreError; a missing secret is not an error."""
    get_secret_store().delete(path)
