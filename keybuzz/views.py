"""HTTP endpoints of the platform core: health, tokens, the caller's tenant and its members."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from keybuzz import selectors, services
from keybuzz.api import PublicAPIView, TenantAPIView
from keybuzz.errors import ApplicationError, NotFoundError
from keybuzz.health import health_report
from keybuzz.serializers import (
    ErrorSerializer,
    HealthSerializer,
    MemberSerializer,
    MeSerializer,
    TenantSettingsSerializer,
    TenantSettingsUpdateSerializer,
    TokenObtainInputSerializer,
    TokenPairSerializer,
    TokenRefreshInputSerializer,
)

ERRORS_400 = {400: OpenApiResponse(ErrorSerializer, description="`invalid_input`: a field is missing or malformed.")}
ERRORS_401 = {401: OpenApiResponse(ErrorSerializer, description="Missing, expired or invalid token.")}
ERRORS_429 = {
    429: OpenApiResponse(
        ErrorSerializer, description="`too_many_attempts`: too many failed logins; see the Retry-After header."
    )
}


def _no_store(response: Response) -> Response:
    # Tokens must not stay in a browser's or a proxy's cache.
    response["Cache-Control"] = "no-store"
    return response


ERRORS_403 = {403: OpenApiResponse(ErrorSerializer, description="Membership removed or tenant deactivated.")}


class HealthView(PublicAPIView):
    """No authentication: load balancers and `curl localhost:4000/health` call it often."""

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer}, tags=["health"])
    def get(self, request: Request) -> Response:
        healthy, body = health_report()
        return Response(body, status=200 if healthy else 503)


class TokenObtainView(PublicAPIView):
    @extend_schema(
        request=TokenObtainInputSerializer,
        responses={
            200: TokenPairSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="`invalid_input`; `tenant_required` when the user has several tenants."
            ),
            **ERRORS_401,
            403: OpenApiResponse(ErrorSerializer, description="`no_tenant` or `not_a_member`."),
            **ERRORS_429,
        },
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenObtainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = services.token_obtain(
            username=data.validated_data["username"],
            password=data.validated_data["password"],
            tenant_slug=data.validated_data.get("tenant"),
            request=request._request,  # the login throttle counts failures per account and address
        )
        return _no_store(Response({"access": pair.access, "refresh": pair.refresh}))


class TokenRefreshView(PublicAPIView):
    @extend_schema(
        summary="A new token pair; the refresh token sent is used up",
        request=TokenRefreshInputSerializer,
        responses={200: TokenPairSerializer, **ERRORS_400, **ERRORS_401, **ERRORS_403},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenRefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = services.token_refresh(refresh=data.validated_data["refresh"])
        return _no_store(Response({"access": pair.access, "refresh": pair.refresh}))


class LogoutView(PublicAPIView):
    @extend_schema(
        summary="Log out: the refresh token can no longer be used",
        description="Revokes the refresh token (its access tokens expire on their own, within "
        "JWT_ACCESS_TOKEN_MINUTES). Revoking a token twice, or an expired one, is not an error.",
        request=TokenRefreshInputSerializer,
        responses={204: None, **ERRORS_400, **ERRORS_401},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenRefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_revoke(refresh=data.validated_data["refresh"])
        return _no_store(Response(status=204))


class MeView(TenantAPIView):
    @extend_schema(responses={200: MeSerializer, **ERRORS_401, **ERRORS_403}, tags=["tenant"])
    def get(self, request: Request) -> Response:
        user, tenant = self.user, self.tenant
        return Response(
            {
                "user": {"id": user.id, "username": user.username, "email": user.email},
                "tenant": {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name},
                "role": self.membership.role,
            }
        )


class MemberListView(TenantAPIView):
    @extend_schema(responses={200: MemberSerializer(many=True), **ERRORS_401, **ERRORS_403}, tags=["tenant"])
    def get(self, request: Request) -> Response:
        return Response(MemberSerializer(selectors.member_list(tenant=self.tenant), many=True).data)


class MemberDetailView(TenantAPIView):
    @extend_schema(responses={200: MemberSerializer, 404: ErrorSerializer, **ERRORS_401, **ERRORS_403}, tags=["tenant"])
    def get(self, request: Request, user_id: int) -> Response:
        membership = selectors.member_get(tenant=self.tenant, user_id=user_id)
        if membership is None:
            raise NotFoundError("No such member in this tenant.")
        return Response(MemberSerializer(membership).data)


class TenantSettingsView(TenantAPIView):
    """The caller's tenant's settings: any member reads them, owners and admins change them."""

    @extend_schema(
        operation_id="tenant_settings_retrieve",
        summary="The tenant's settings (AI help: reply tone, signature, on/off)",
        responses={200: TenantSettingsSerializer, **ERRORS_401, **ERRORS_403},
        tags=["tenant"],
    )
    def get(self, request: Request) -> Response:
        return Response(TenantSettingsSerializer(self.tenant).data)

    @extend_schema(
        operation_id="tenant_settings_update",
        summary="Change the tenant's settings (owner or admin)",
        request=TenantSettingsUpdateSerializer,
        responses={
            200: TenantSettingsSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="`invalid_input`: an unknown tone, a signature over 500 characters, nothing to update.",
            ),
            **ERRORS_401,
            403: OpenApiResponse(
                ErrorSerializer,
                description="`role_forbidden`: agents cannot change the settings; also `membership_revoked`, "
                "`tenant_inactive`.",
            ),
        },
        tags=["tenant"],
    )
    def patch(self, request: Request) -> Response:
        services.tenant_settings_check_role(actor=self.membership)
        serializer = TenantSettingsUpdateSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            problem = problems[0] if isinstance(problems, list) and problems else problems
            message = str(problem) if field == "non_field_errors" else f"{field}: {problem}"
            raise ApplicationError(message, code="invalid_input", details=serializer.errors)
        data = serializer.validated_data
        tenant = services.tenant_settings_update(
            tenant=self.tenant,
            actor=self.membership,
            reply_tone=data.get("reply_tone"),
            signature=data.get("signature"),
            ai_enabled=data.get("ai_enabled"),
        )
        return Response(TenantSettingsSerializer(tenant).data)
