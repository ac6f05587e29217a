from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

if TYPE_CHECKING:  # DRF's views import the permission classes named in the settings: no import cycle
    from rest_framework.views import APIView


class IsTenantMember(BasePermission):
    """Authenticated through a tenant token (any role)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return getattr(request, "membership", None) is not None


class IsTenantAdmin(BasePermission):
    """Owner or admin of the token's tenant; agents are refused."""

    message = "This action needs the owner or admin role in this tenant."
    code = "role_forbidden"

    def has_permission(self, request: Request, view: APIView) -> bool:
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin
