"""What a KeyBuzz JWT stands for: its claims, and the live membership behind them.

A token names a user and a tenant; every request and every refresh re-reads the membership (one
query, joined with the user and the tenant), so a removed member or a deactivated tenant is
refused at once, whatever the token's expiry. The role used for permissions is the one in the
database, not the token's.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model

from keybuzz.errors import AuthenticationError, ForbiddenError
from keybuzz.models import Membership

TENANT_CLAIM = "tenant_id"
ROLE_CLAIM = "role"


def membership_check(*, user_id: int | str, tenant_id: object) -> Membership:
    """The active membership a token's claims point to; AuthenticationError (401) or
    ForbiddenError (403) when there is none to act for."""
    try:
        tenant_uuid = uuid.UUID(str(tenant_id))
    except ValueError:
        raise AuthenticationError("Token has no valid tenant claim.", code="token_not_valid") from None
    membership = (
        Membership.objects.select_related("user", "tenant").filter(user_id=user_id, tenant_id=tenant_uuid).first()
    )
    if membership is None:
        user = get_user_model().objects.filter(pk=user_id).only("is_active").first()
        if user is None or not user.is_active:
            raise AuthenticationError("User not found or inactive.", code="user_inactive")
        raise ForbiddenError("You are no longer a member of this tenant.", code="membership_revoked")
    if not membership.user.is_active:
        raise AuthenticationError("User not found or inactive.", code="user_inactive")
    if not membership.tenant.is_active:
        raise ForbiddenError("This tenant is deactivated.", code="tenant_inactive")
    return membership
