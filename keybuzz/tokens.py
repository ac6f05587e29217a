"""What a KeyBuzz JWT stands for: its claims, and the live membership behind them.

A token names a user, a tenant and the login session it belongs to; every request and every
refresh re-reads the membership (one query, joined with the user and the tenant, that also asks
whether the session was logged out), so a removed member, a deactivated tenant or a logged-out
session is refused at once, whatever the token's expiry. The role used for permissions is the one
in the database, not the token's.
"""

from __future__ import annotations

import functools
import uuid

from django.contrib.auth.models import User
from django.db import connection
from django.utils.crypto import constant_time_compare, salted_hmac

from keybuzz.db import model_columns, read_cursor, row_instances
from keybuzz.errors import AuthenticationError, ForbiddenError
from keybuzz.models import LoggedOutSession, Membership, Tenant

TENANT_CLAIM = "tenant_id"
ROLE_CLAIM = "role"
# Changes when the user's password changes, so every token issued before a new password is refused.
PASSWORD_CLAIM = "pwv"
# The login session: set at login, kept through refreshes, ended by logout (LoggedOutSession). Tokens
# issued before it existed have none: they cannot be logged out and expire on their own.
SESSION_CLAIM = "sid"
_MAX_ID = 2**63 - 1  # the largest id a bigint column holds


def password_version_of(user: User) -> str:
    """A digest of the user's current password hash (an HMAC with the server's key, so the token
    carries nothing usable about the password). Setting a new password, through the admin,
    `create_tenant` or `ensure_superadmin`, changes it."""
    return salted_hmac("keybuzz.tokens.password_version", user.password, algorithm="sha256").hexdigest()[:20]


def user_id_claim(value: object) -> int:
    """The token's user id, or AuthenticationError: a signed token may still carry nonsense."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AuthenticationError("Token has no valid user claim.", code="token_not_valid")
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _MAX_ID:
        raise AuthenticationError("Token has no valid user claim.", code="token_not_valid")
    return int(text)


def session_id_claim(value: object) -> uuid.UUID | None:
    """The token's session id (None for a token issued before sessions), or AuthenticationError."""
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise AuthenticationError("Token has no valid session claim.", code="token_not_valid") from None


def membership_check(*, user_id: object, tenant_id: object, password_version: object, session_id: object) -> Membership:
    """The active membership a token's claims point to; AuthenticationError (401) or
    ForbiddenError (403) when there is none to act for."""
    user_pk = user_id_claim(user_id)
    try:
        tenant_uuid = uuid.UUID(str(tenant_id))
    except ValueError:
        raise AuthenticationError("Token has no valid tenant claim.", code="token_not_valid") from None
    session = session_id_claim(session_id)
    found = _membership_get(user_pk, tenant_uuid, session)
    if found is None:
        user = User.objects.filter(pk=user_pk).only("is_active").first()
        if user is None or not user.is_active:
            raise AuthenticationError("User not found or inactive.", code="user_inactive")
        raise ForbiddenError("You are no longer a member of this tenant.", code="membership_revoked")
    membership, logged_out = found
    if logged_out:
        raise AuthenticationError("This session was logged out: log in again.", code="token_not_valid")
    if not membership.user.is_active:
        raise AuthenticationError("User not found or inactive.", code="user_inactive")
    if not isinstance(password_version, str) or not constant_time_compare(
        password_version, password_version_of(membership.user)
    ):
        raise AuthenticationError("Token was issued before a password change: log in again.", code="token_not_valid")
    if not membership.tenant.is_active:
        raise ForbiddenError("This tenant is deactivated.", code="tenant_inactive")
    return membership


@functools.cache
def _membership_sql() -> str:
    # The names come from the models' meta; the three values are parameters.
    q = connection.ops.quote_name
    return (
        f"SELECT {model_columns(Membership, 'm')}, {model_columns(User, 'u')}, {model_columns(Tenant, 't')}"  # noqa: S608
        f", EXISTS (SELECT 1 FROM {q(LoggedOutSession._meta.db_table)} s WHERE s.session_id = %s)"
        f" FROM {q(Membership._meta.db_table)} m JOIN {q(User._meta.db_table)} u ON u.id = m.user_id"
        f" JOIN {q(Tenant._meta.db_table)} t ON t.id = m.tenant_id WHERE m.user_id = %s AND m.tenant_id = %s"
    )


def _membership_get(user_pk: int, tenant_id: uuid.UUID, session_id: uuid.UUID | None) -> tuple[Membership, bool] | None:
    """The membership with its user and tenant, and whether the session was logged out, in one
    query through the (user, tenant) unique index and the sessions' primary key.

    Written out once rather than `select_related(...).filter(...).first()`: the ORM compiled that
    query on every request, 3.4 of the 3.8 ms authentication took (measured on the API benchmark's
    database), for a query PostgreSQL answers in 0.1 ms."""
    with read_cursor() as cursor:
        tenant_value = Tenant._meta.pk.get_db_prep_value(tenant_id, connection)
        session_value = LoggedOutSession._meta.pk.get_db_prep_value(session_id, connection)
        cursor.execute(_membership_sql(), [session_value, user_pk, tenant_value])
        row = cursor.fetchone()
    if row is None:
        return None
    membership, user, tenant = row_instances(row, (Membership, User, Tenant))
    assert isinstance(membership, Membership) and isinstance(user, User) and isinstance(tenant, Tenant)
    membership.user, membership.tenant = user, tenant
    return membership, bool(row[-1])
