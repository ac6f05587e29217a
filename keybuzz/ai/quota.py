"""The per-tenant daily limit of AI gateway calls (`KEYBUZZ_AI_DAILY_LIMIT`, per UTC day).

A call is counted before the gateway is called (`ai_quota_reserve`): an INSERT that does nothing if
the day's row exists, then one conditional UPDATE `calls = calls + 1 WHERE calls < limit`. The
database serialises the UPDATEs on the row, so concurrent requests can never together pass the
limit (a read-then-write would let them). A call the gateway never answered (down, timeout, 429,
5xx) gives its count back (`ai_quota_release`): the tenant did not get, nor cost, anything. A
refusal or a malformed answer keeps its count: the gateway did produce (and bill) an answer, and a
prompt that keeps failing that way must not be retried for free.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from keybuzz.errors import ApplicationError
from keybuzz.models import AiUsage, Tenant

DEFAULT_DAILY_LIMIT = 500


class AiQuotaExceededError(ApplicationError):
    status_code = 429
    code = "ai_quota_exceeded"


def ai_daily_limit() -> int:
    return max(0, int(getattr(settings, "KEYBUZZ_AI_DAILY_LIMIT", DEFAULT_DAILY_LIMIT)))


def ai_quota_reserve(*, tenant: Tenant, now: datetime | None = None) -> date:
    """Counts one call for today (UTC) and returns the day, or raises 429 `ai_quota_exceeded`."""
    now = now or timezone.now()
    day = now.astimezone(UTC).date()
    limit = ai_daily_limit()
    AiUsage.objects.bulk_create([AiUsage(tenant=tenant, day=day, calls=0)], ignore_conflicts=True)
    taken = AiUsage.objects.filter(tenant=tenant, day=day, calls__lt=limit).update(calls=F("calls") + 1)
    if not taken:
        resets_at = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
        raise AiQuotaExceededError(
            f"This tenant used its {limit} AI requests for today; the count starts again at midnight UTC.",
            details={"limit": limit, "resetsAt": resets_at.isoformat().replace("+00:00", "Z")},
        )
    return day


def ai_quota_release(*, tenant: Tenant, day: date) -> None:
    """Gives back a call counted by `ai_quota_reserve` that the gateway never answered."""
    AiUsage.objects.filter(tenant=tenant, day=day, calls__gt=0).update(calls=F("calls") - 1)
