"""Base classes of the API's views: who is calling, typed.

`TenantAPIView` is for every endpoint of a tenant's API (the default authentication and
permission: a tenant JWT); `PublicAPIView` for the few that need none (health, tokens).
"""

from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from keybuzz.authentication import membership_of
from keybuzz.models import Membership, Tenant


class TenantAPIView(APIView):
    """The caller's membership, tenant and user, as `TenantJWTAuthentication` found them."""

    @property
    def membership(self) -> Membership:
        return membership_of(self.request)

    @property
    def tenant(self) -> Tenant:
        return self.membership.tenant

    @property
    def user(self) -> User:
        return self.membership.user


class PublicAPIView(APIView):
    """No JWT needed; credential failures still answer 401 with a Bearer challenge, not 403."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
