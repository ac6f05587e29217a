"""Small factory functions for tests: real rows, no magic."""

from __future__ import annotations

import itertools

from django.contrib.auth.models import User
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.models import Membership, Role, Tenant
from keybuzz.services import token_obtain
from marketplaces.models import ConnectionStatus, MarketplaceConnection

_seq = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_tenant(slug: str | None = None, *, is_active: bool = True) -> Tenant:
    n = next(_seq)
    return Tenant.objects.create(slug=slug or f"tenant-{n}", name=f"Tenant {n}", is_active=is_active)


def make_user(username: str | None = None, **extra) -> User:
    user = User.objects.create(username=username or f"user-{next(_seq)}", **extra)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def make_member(tenant: Tenant | None = None, *, role: str = Role.OWNER, user: User | None = None) -> Membership:
    return Membership.objects.create(user=user or make_user(), tenant=tenant or make_tenant(), role=role)


def api_client(membership: Membership | None = None) -> APIClient:
    """An API client; with a membership, it carries a real access token for that tenant."""
    client = APIClient()
    if membership is not None:
        pair = token_obtain(
            username=membership.user.username,
            password=PASSWORD,
            tenant_slug=membership.tenant.slug,
            request=RequestFactory().post("/api/v1/auth/token"),
        )
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client


_NOW = object()


def make_connection(
    tenant: Tenant | None = None,
    *,
    seller: str | None = None,
    status: str = ConnectionStatus.CONNECTED,
    app_source: str = "external_test",
    connected_at=_NOW,
    **fields,
) -> MarketplaceConnection:
    """An Amazon connection as the OAuth callback leaves it (the secret itself is not written)."""
    tenant = tenant or make_tenant()
    seller = seller or fields.pop("selling_partner_id", None) or f"A{next(_seq):012d}"
    fields.setdefault("region", "EU")
    fields.setdefault("marketplace_ids", ["A13V1IB3VIYZZH"])
    fields.setdefault("secret_ref", f"keybuzz/tenants/{tenant.id}/amazon/{seller}")
    return MarketplaceConnection.objects.create(
        tenant=tenant,
        selling_partner_id=seller,
        status=status,
        app_source=app_source,
        connected_at=timezone.now() if connected_at is _NOW else connected_at,
        **fields,
    )
