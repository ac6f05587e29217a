"""JWT authentication that also resolves the request's tenant (the membership rules are in
`keybuzz.tokens`)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from keybuzz.logging import log_context_bind
from keybuzz.tokens import TENANT_CLAIM, membership_check


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
