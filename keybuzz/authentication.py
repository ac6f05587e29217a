"""JWT authentication that also resolves the request's tenant.

The token names a tenant; every request re-reads the membership (one query, joined with the user
and the tenant), so a removed member or a deactivated tenant is refused at once, whatever the
token's expiry. The role used for permissions is the one in the database, not the token's.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from keybuzz.logging import log_context_bind
from keybuzz.models import Membership

TENANT_CLAIM = "tenant_id"
ROLE_CLAIM = "role"


def membership_check(*, user_id: object, tenant_id: object) -> Membership:
    """The active membership a token's claims point to, or the exception to answer with."""
    try:
        tenant_uuid = uuid.UUID(str(tenant_id))
    except ValueError:
        raise InvalidToken({"detail": "Token has no valid tenant claim.", "code": "token_not_valid"}) from None
    membership = (
        Membership.objects.select_related("user", "tenant").filter(user_id=user_id, tenant_id=tenant_uuid).first()
    )
    if membership is None:
        user = get_user_model().objects.filter(pk=user_id).only("is_active").first()
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("User not found or inactive.", code="user_inactive")
        raise exceptions.PermissionDenied("You are no longer a member of this tenant.", code="membership_revoked")
    if not membership.user.is_active:
        raise exceptions.AuthenticationFailed("User not found or inactive.", code="user_inactive")
    if not membership.tenant.is_active:
        raise exceptions.PermissionDenied("This tenant is deactivated.", code="tenant_inactive")
    return membership


class TenantJWTAuthentication(JWTAuthentication):
    def authenticate(self, request: Request):
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        token: Token = self.get_validated_token(raw_token)
        user_id = token.get(api_settings.USER_ID_CLAIM)
        if user_id is None or TENANT_CLAIM not in token:
            raise InvalidToken({"detail": "Token is missing its user or tenant claim.", "code": "token_not_valid"})
        membership = membership_check(user_id=user_id, tenant_id=token[TENANT_CLAIM])
        # Views read the tenant from here; `request._request` keeps it for Django-level code too.
        request.tenant = request._request.tenant = membership.tenant
        request.membership = request._request.membership = membership
        log_context_bind(tenant_id=membership.tenant_id)  # the request's log lines name the tenant
        return membership.user, token


class TenantJWTScheme(OpenApiAuthenticationExtension):
    """Documents the authenticator in the OpenAPI schema as a plain Bearer JWT."""

    target_class = TenantJWTAuthentication
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="AUTHORIZATION", token_prefix="Bearer", bearer_format="JWT"
        )
