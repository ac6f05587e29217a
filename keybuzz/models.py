"""Tenants (seller companies) and the memberships that give users a role in them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class ReplyTone(models.TextChoices):
    """How AI-drafted replies sound (the seller's choice; a closed list, so a setting cannot carry
    free-form instructions into the gateway's prompt)."""

    NEUTRAL = "neutral", "Neutral"
    FRIENDLY = "friendly", "Friendly"
    FORMAL = "formal", "Formal"


SIGNATURE_MAX_LENGTH = 500


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    # The seller's settings for its agents' AI help (GET/PATCH /api/v1/tenant/settings). AI is on by
    # default: it only suggests, nothing reaches a buyer until an agent posts it. The defaults are the
    # database's too (db_default): code that predates these columns (a rolling deploy, the upgrade
    # test's old models) still inserts tenants.
    reply_tone = models.CharField(
        max_length=16, choices=ReplyTone.choices, default=ReplyTone.NEUTRAL, db_default=ReplyTone.NEUTRAL.value
    )
    signature = models.TextField(blank=True, max_length=SIGNATURE_MAX_LENGTH, default="", db_default="")
    ai_enabled = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    AGENT = "agent", "Agent"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant"),
        ]
        indexes = [models.Index(fields=["tenant", "role"], name="membership_tenant_role")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class AiUsage(models.Model):
    """Calls to the AI gateway a tenant made on one UTC day: what `KEYBUZZ_AI_DAILY_LIMIT` counts
    (keybuzz.ai.quota). One row per tenant and day, incremented with a conditional UPDATE so that
    concurrent requests can never together pass the limit."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField()
    calls = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="aiusage_unique_tenant_day")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}: {self.calls}"


class LoggedOutSession(models.Model):
    """A login session ended by `POST /api/v1/auth/logout`: its access tokens are refused from then on.

    A session is what one login starts: its id is a claim of the refresh token, kept through every
    rotation and copied into each access token. Access tokens are not stored anywhere, so revoking
    the refresh token alone left them valid until they expired (up to JWT_ACCESS_TOKEN_MINUTES);
    the membership query every request already makes also looks here (keybuzz.tokens). A row is
    useless once every token of its session has expired: logging out deletes those rows."""

    session_id = models.UUIDField(primary_key=True)
    logged_out_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.session_id} (logged out {self.logged_out_at:%Y-%m-%d %H:%M})"
