from __future__ import annotations

from rest_framework.permissions import BasePermission


class IsTenantMember(BasePermission):
    """Authenticated through a tenant token (any role)."""

    def has_permission(self, request, view) -> bool:
        return getattr(request, "membership", None) is not None


class IsTenantAdmin(BasePermission):
    """Owner or admin of the token's tenant; agents are refused."""

    message = "This action needs the owner or admin role in this tenant."
    code = "role_forbidden"

    def has_permission(self, request, view) -> bool:
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin
