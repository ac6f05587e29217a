"""HTTP endpoints of the platform core: health, tokens, the caller's tenant and its members."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from keybuzz import selectors, services
from keybuzz.api import PublicAPIView, TenantAPIView
from keybuzz.errors import NotFoundError
from keybuzz.health import health_report
from keybuzz.serializers import (
    AccessTokenSerializer,
    ErrorSerializer,
    HealthSerializer,
    MemberSerializer,
    MeSerializer,
    TokenObtainInputSerializer,
    TokenPairSerializer,
    TokenRefreshInputSerializer,
)

ERRORS_401 = {401: OpenApiResponse(ErrorSerializer, description="Missing, expired or invalid token.")}
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
            400: OpenApiResponse(ErrorSerializer, description="`tenant_required` when the user has several tenants."),
            **ERRORS_401,
            403: OpenApiResponse(ErrorSerializer, description="`no_tenant` or `not_a_member`."),
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
        )
        return Response({"access": pair.access, "refresh": pair.refresh})


class TokenRefreshView(PublicAPIView):
    @extend_schema(
        request=TokenRefreshInputSerializer,
        responses={200: AccessTokenSerializer, **ERRORS_401, **ERRORS_403},
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        data = TokenRefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"access": services.token_refresh(refresh=data.validated_data["refresh"])})


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
