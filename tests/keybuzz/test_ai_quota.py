"""The per-tenant daily limit of AI calls (keybuzz.ai.quota): counted per UTC day, given back when
the gateway never answered, and never passed by concurrent requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keybuzz.ai.quota import AiQuotaExceededError, ai_quota_release, ai_quota_reserve
from keybuzz.models import AiUsage
from tests.factories import make_tenant
from tests.threads import race

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_the_limit_per_tenant_and_utc_day(settings):
    settings.KEYBUZZ_AI_DAILY_LIMIT = 2
    tenant, other = make_tenant(), make_tenant()
    assert ai_quota_reserve(tenant=tenant, now=NOON) == NOON.date()
    ai_quota_reserve(tenant=tenant, now=NOON)
    with pytest.raises(AiQuotaExceededError) as caught:
        ai_quota_reserve(tenant=tenant, now=NOON)
    assert caught.value.status_code == 429 and caught.value.code == "ai_quota_exceeded"
    assert caught.value.details == {"limit": 2, "resetsAt": "2026-12-04T00:00:00Z"}
    ai_quota_reserve(tenant=other, now=NOON)  # its own count
    # 23:30 in Berlin on the 3rd is already the 3rd in UTC; 00:30 UTC on the 4th is a new day.
    ai_quota_reserve(tenant=tenant, now=NOON + timedelta(hours=12, minutes=30))
    assert AiUsage.objects.get(tenant=tenant, day=NOON.date()).calls == 2


@pytest.mark.django_db
def test_a_released_call_can_be_made_again(settings):
    settings.KEYBUZZ_AI_DAILY_LIMIT = 1
    tenant = make_tenant()
    day = ai_quota_reserve(tenant=tenant, now=NOON)
    ai_quota_release(tenant=tenant, day=day)
    ai_quota_reserve(tenant=tenant, now=NOON)
    ai_quota_release(tenant=tenant, day=day)
    ai_quota_release(tenant=tenant, day=day)  # never below zero
    assert AiUsage.objects.get(tenant=tenant).calls == 0


@pytest.mark.django_db
def test_a_limit_of_zero_turns_ai_off(settings):
    settings.KEYBUZZ_AI_DAILY_LIMIT = 0
    with pytest.raises(AiQuotaExceededError):
        ai_quota_reserve(tenant=make_tenant(), now=NOON)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_pass_the_limit(requires_postgres, settings):
    settings.KEYBUZZ_AI_DAILY_LIMIT = 5
    tenant = make_tenant()
    results = race(12, lambda i: ai_quota_reserve(tenant=tenant, now=NOON))
    refused = [r for r in results if isinstance(r, AiQuotaExceededError)]
    assert len(refused) == 7, results
    assert AiUsage.objects.get(tenant=tenant).calls == 5
