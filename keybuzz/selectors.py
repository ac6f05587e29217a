"""Read-only queries of the platform core; each takes the tenant explicitly."""

from __future__ import annotations

from django.db.models import QuerySet

from keybuzz.models import Membership, Tenant


def member_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(tenant=tenant, user__is_active=True).select_related("user").order_by("user__username")
    )


def member_get(*, tenant: Tenant, user_id: int) -> Membership | None:
    return member_list(tenant=tenant).filter(user_id=user_id).first()
