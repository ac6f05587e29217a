"""The operators' figures, read at the moment they are asked for (nothing here is cached).

"Today" starts at midnight in the project's time zone (TIME_ZONE, UTC here), as the runbook's
`createdAt >= CURRENT_DATE` did on a UTC database. Every function runs a fixed number of queries,
whatever the number of tenants, connections or days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Count, Min, Model, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from keybuzz.models import Tenant
from marketplaces.models import (
    ConnectionStatus,
    ExternalMessage,
    MarketplaceConnection,
    MarketplaceType,
    PollCounter,
    PollRun,
    QuarantinedMessage,
    SpApiDailyUsage,
)
from marketplaces.selectors import with_effective_status
from tickets.models import Channel, DeliveryStatus, Direction, Ticket, TicketMessage
from tickets.selectors import overdue_ticket_count

M = TypeVar("M", bound=Model)


def start_of_day(moment: datetime) -> datetime:
    """Midnight of `moment`'s day in the current time zone."""
    return timezone.localtime(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def _age(now: datetime, moment: datetime | None) -> int | None:
    return None if moment is None else max(0, int((now - moment).total_seconds()))


@dataclass(frozen=True)
class PollRunInfo:
    started_at: datetime
    finished_at: datetime
    worker: str
    connections: int
    fetched: int
    new_messages: int
    new_tickets: int
    quarantined: int
    failures: int
    seconds: float
    age_seconds: int


@dataclass(frozen=True)
class OpsFigures:
    """What the runbook's monitoring queries asked, and what shows a pipeline in trouble."""

    generated_at: datetime
    tenant: str | None  # the tenant's slug, or None for every tenant
    # Amazon connections by effective status: a CONNECTED connection made with another SP-API app
    # than the current one counts as NEEDS_REAUTH (marketplaces.selectors).
    connections_by_status: dict[str, int]
    active_connections: int  # CONNECTED with the current app: the ones the poller polls
    connections_error: int
    connections_needs_reauth: int
    # Among the active connections, the age of the oldest last poll (a never-polled connection
    # counts from when it was connected): grows without bound when the poller stops.
    oldest_poll_age_seconds: int | None
    messages_today: int  # Amazon messages fetched (ExternalMessage rows created) since midnight
    tickets_today: int  # Amazon tickets created since midnight
    quarantined_total: int
    quarantined_today: int
    overdue_tickets: int  # tickets.selectors' definition, the one agents see
    replies_by_status: dict[str, int]  # agents' replies by delivery status: QUEUED, SENT, FAILED
    oldest_queued_reply_age_seconds: int | None  # grows when send_replies stops
    # The poller's runs are global (one run serves every tenant), even when `tenant` is set.
    last_poll_run: PollRunInfo | None
    poll_runs_24h: int
    poll_failures_24h: int  # failed connection polls in the last 24 hours
    poll_stale_after_seconds: int = field(default=900)

    @property
    def poller_stalled(self) -> bool:
        """No poll run for too long, or an active connection not polled for too long."""
        limit = self.poll_stale_after_seconds
        if self.active_connections and (self.oldest_poll_age_seconds or 0) > limit:
            return True
        return self.last_poll_run is not None and self.last_poll_run.age_seconds > limit

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["poller_stalled"] = self.poller_stalled
        return data


def _connection_figures(tenant: Tenant | None, now: datetime) -> dict[str, Any]:
    queryset = MarketplaceConnection.objects.filter(type=MarketplaceType.AMAZON)
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    active = Q(effective_status=ConnectionStatus.CONNECTED)
    row = with_effective_status(queryset).aggregate(
        **{status.value: Count("pk", filter=Q(effective_status=status.value)) for status in ConnectionStatus},
        oldest_poll=Min(Coalesce("last_polled_at", "connected_at", "created_at"), filter=active),
    )
    by_status = {status.value: row[status.value] for status in ConnectionStatus}
    return {
        "connections_by_status": by_status,
        "active_connections": by_status[ConnectionStatus.CONNECTED],
        "connections_error": by_status[ConnectionStatus.ERROR],
        "connections_needs_reauth": by_status[ConnectionStatus.NEEDS_REAUTH],
        "oldest_poll_age_seconds": _age(now, row["oldest_poll"]),
    }


def _scoped(queryset: QuerySet[M], tenant: Tenant | None) -> QuerySet[M]:
    return queryset if tenant is None else queryset.filter(tenant=tenant)


def last_poll_run(*, now: datetime | None = None) -> PollRunInfo | None:
    now = now or timezone.now()
    run = PollRun.objects.order_by("-finished_at", "-id").first()
    if run is None:
        return None
    return PollRunInfo(
        started_at=run.started_at,
        finished_at=run.finished_at,
        worker=run.worker,
        connections=run.connections,
        fetched=run.fetched,
        new_messages=run.new_messages,
        new_tickets=run.new_tickets,
        quarantined=run.quarantined,
        failures=run.failures,
        seconds=run.seconds,
        age_seconds=_age(now, run.finished_at) or 0,
    )


def ops_figures(*, tenant: Tenant | None = None, now: datetime | None = None) -> OpsFigures:
    """Every figure, for one tenant or all of them, in eight queries."""
    now = now or timezone.now()
    midnight = start_of_day(now)
    messages_today = (
        _scoped(ExternalMessage.objects.all(), tenant)
        .filter(type=MarketplaceType.AMAZON, created_at__gte=midnight)
        .count()
    )
    tickets_today = (
        _scoped(Ticket.objects.all(), tenant).filter(channel=Channel.AMAZON, created_at__gte=midnight).count()
    )
    quarantine = _scoped(QuarantinedMessage.objects.all(), tenant).aggregate(
        total=Count("pk"), today=Count("pk", filter=Q(created_at__gte=midnight))
    )
    replies = (
        _scoped(TicketMessage.objects.all(), tenant)
        .filter(direction=Direction.OUTBOUND)
        .aggregate(
            **{status.value: Count("pk", filter=Q(delivery_status=status.value)) for status in DeliveryStatus},
            oldest_queued=Min("created_at", filter=Q(delivery_status=DeliveryStatus.QUEUED)),
        )
    )
    runs = PollRun.objects.filter(finished_at__gte=now - timedelta(hours=24)).aggregate(
        runs=Count("pk"), failures=Coalesce(Sum("failures"), 0)
    )
    return OpsFigures(
        generated_at=now,
        tenant=tenant.slug if tenant is not None else None,
        **_connection_figures(tenant, now),
        messages_today=messages_today,
        tickets_today=tickets_today,
        quarantined_total=quarantine["total"],
        quarantined_today=quarantine["today"],
        overdue_tickets=overdue_ticket_count(tenant=tenant, now=now),
        replies_by_status={status.value: replies[status.value] for status in DeliveryStatus},
        oldest_queued_reply_age_seconds=_age(now, replies["oldest_queued"]),
        last_poll_run=last_poll_run(now=now),
        poll_runs_24h=runs["runs"],
        poll_failures_24h=runs["failures"],
        poll_stale_after_seconds=settings.METRICS_POLL_STALE_SECONDS,
    )


@dataclass(frozen=True)
class DayActivity:
    day: date
    messages: int
    tickets: int


def daily_activity(*, tenant: Tenant | None = None, days: int = 30, now: datetime | None = None) -> list[DayActivity]:
    """Amazon messages fetched and tickets created per day over the last `days` days (today
    included, oldest first, days without any at zero): one GROUP BY query per series."""
    now = now or timezone.now()
    first = start_of_day(now) - timedelta(days=days - 1)

    def per_day(queryset: QuerySet[Any]) -> dict[date, int]:
        rows = (
            queryset.filter(created_at__gte=first)
            .annotate(day=TruncDate("created_at"))
            .order_by()
            .values("day")
            .annotate(n=Count("pk"))
            .values_list("day", "n")
        )
        return dict(rows)

    messages = per_day(_scoped(ExternalMessage.objects.all(), tenant).filter(type=MarketplaceType.AMAZON))
    tickets = per_day(_scoped(Ticket.objects.all(), tenant).filter(channel=Channel.AMAZON))
    start = first.date()
    return [
        DayActivity(day=d, messages=messages.get(d, 0), tickets=tickets.get(d, 0))
        for d in (start + timedelta(days=n) for n in range(days))
    ]


def recent_poll_runs(*, limit: int = 10) -> list[PollRun]:
    return list(PollRun.objects.order_by("-finished_at", "-id")[:limit])


def spapi_daily_usage(*, days: int = 14) -> list[SpApiDailyUsage]:
    """SP-API calls, throttles and failures per day (sync_orders), newest first: one query."""
    return list(SpApiDailyUsage.objects.order_by("-day")[:days])


def poll_counters() -> dict[str, float]:
    """The poller's cumulative counters (marketplaces.polling.records), by name: one query."""
    return dict(PollCounter.objects.values_list("name", "value"))


def tenant_choices() -> list[tuple[str, str]]:
    """(slug, name) of every tenant, for the dashboard's selector: one query."""
    return list(Tenant.objects.order_by("slug").values_list("slug", "name"))


def tenant_by_slug(slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()
