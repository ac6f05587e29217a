"""Read-only ticket queries. Each takes the tenant explicitly; none writes.

The list's per-ticket figures (message counts, last-message preview, last inbound / last reply
times, the overdue flag) are correlated subqueries of one SELECT, so a page costs one query
whatever its size.

"Unanswered": an OPEN or PENDING ticket whose last buyer (INBOUND) message has no agent reply
(OUTBOUND, not FAILED) at or after it; both times are columns of the ticket, kept by the writes
(`Ticket.last_inbound_at`, `Ticket.last_reply_at`). "Overdue": unanswered and its response due time has passed.
A reply clears `response_due_at` (services.ticket_message_create), so the due time is the response
clock; the message check keeps the definition true even when a buyer message is filed late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Substr
from django.utils import timezone

from keybuzz.models import Tenant
from tickets.models import Attachment, DeliveryStatus, Direction, Ticket, TicketMessage, TicketStatus

PREVIEW_LENGTH = 160
OLDEST_CANDIDATES = 20  # unanswered tickets with the earliest due times, among which the oldest wait is
ACTIVE_STATUSES = (TicketStatus.OPEN, TicketStatus.PENDING)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TicketFilters:
    statuses: list[str] = field(default_factory=list)
    channel: str | None = None
    assignee: str | int | None = None  # "me", "none" or a user id
    connection_id: str | None = None
    overdue: bool | None = None
    q: str = ""


def _messages_of_outer_ticket() -> QuerySet[TicketMessage]:
    return TicketMessage.objects.filter(ticket=OuterRef("pk"))


def _count(queryset: QuerySet[TicketMessage]) -> Coalesce:
    counted = queryset.order_by().values("ticket").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _unanswered_q() -> Q:
    return Q(status__in=ACTIVE_STATUSES, last_inbound_at__isnull=False) & (
        Q(last_reply_at__isnull=True) | Q(last_reply_at__lt=F("last_inbound_at"))
    )


def _overdue_q(now: datetime) -> Q:
    return _unanswered_q() & Q(response_due_at__lt=now)


def ticket_queryset(*, tenant: Tenant, now: datetime | None = None) -> QuerySet[Ticket]:
    """The tenant's tickets with everything a list row or the detail header shows."""
    now = now or timezone.now()
    messages = _messages_of_outer_ticket()
    conversation = messages.filter(direction__in=[Direction.INBOUND, Direction.OUTBOUND]).order_by("-sent_at", "-id")
    return (
        Ticket.objects.filter(tenant=tenant)
        .select_related("assignee")
        .annotate(
            preview_body=Subquery(conversation.values(p=Substr("body", 1, PREVIEW_LENGTH))[:1]),
            preview_direction=Subquery(conversation.values("direction")[:1]),
            preview_author_name=Subquery(conversation.values("author_name")[:1]),
            preview_sent_at=Subquery(conversation.values("sent_at")[:1]),
            message_count=_count(messages.filter(direction__in=[Direction.INBOUND, Direction.OUTBOUND])),
            note_count=_count(messages.filter(direction=Direction.NOTE)),
            failed_count=_count(messages.filter(delivery_status=DeliveryStatus.FAILED)),
        )
        .annotate(
            is_overdue=Case(When(_overdue_q(now), then=Value(True)), default=Value(False), output_field=BooleanField()),
        )
    )


def overdue_ticket_count(*, tenant: Tenant | None = None, now: datetime | None = None) -> int:
    """How many tickets are overdue (the definition above): the tenant's, or with no tenant every
    tenant's, for the operators' metrics. One query."""
    now = now or timezone.now()
    queryset = Ticket.objects.all() if tenant is None else Ticket.objects.filter(tenant=tenant)
    return queryset.filter(_overdue_q(now)).count()


def ticket_list(
    *, tenant: Tenant, user_id: int, filters: TicketFilters, now: datetime | None = None
) -> QuerySet[Ticket]:
    """The tenant's tickets matching `filters` (unordered: the paginator orders them)."""
    now = now or timezone.now()
    queryset = ticket_queryset(tenant=tenant, now=now)
    if filters.statuses:
        queryset = queryset.filter(status__in=filters.statuses)
    if filters.channel:
        queryset = queryset.filter(channel=filters.channel)
    if filters.assignee == "me":
        queryset = queryset.filter(assignee_id=user_id)
    elif filters.assignee == "none":
        queryset = queryset.filter(assignee__isnull=True)
    elif filters.assignee is not None:
        queryset = queryset.filter(assignee_id=int(filters.assignee))
    if filters.connection_id:
        queryset = queryset.filter(connection_id=filters.connection_id)
    if filters.overdue is True:
        queryset = queryset.filter(_overdue_q(now))
    elif filters.overdue is False:
        queryset = queryset.exclude(_overdue_q(now))
    if filters.q:
        queryset = queryset.filter(_search_q(tenant=tenant, text=filters.q))
    return queryset


# A search matching more tickets than this is "common": it is answered by walking the inbox in its
# order and testing each ticket (a page fills after a few dozen), not by collecting every match.
SEARCH_IDS_MAX = 2000


def _search_q(*, tenant: Tenant, text: str) -> Q:
    """Tickets of the tenant with `text` in the subject, customer, order id or a message.

    Rare and missing words: one lookup per side that the trigram indexes serve (migration tickets
    0007), limited to the tenant, gives the ids (15 ms at 200,000 tickets). A common word would
    make those lookups collect most of the tenant's tickets and sort them (385 ms for "keyboard"
    at 200,000): past SEARCH_IDS_MAX matches, the test runs per ticket in the page's order instead."""
    fields = (
        Q(subject__icontains=text)
        | Q(customer_name__icontains=text)
        | Q(customer_ref__icontains=text)
        | Q(order_id__icontains=text)
    )
    in_fields = Ticket.objects.filter(fields, tenant=tenant).values_list("pk", flat=True)
    in_messages = TicketMessage.objects.filter(tenant=tenant, body__icontains=text).values_list("ticket_id", flat=True)
    # UNION ALL streams and stops at the limit (UNION would collect and deduplicate every match first).
    ids = set(in_fields.union(in_messages, all=True)[: SEARCH_IDS_MAX + 1])
    if len(ids) <= SEARCH_IDS_MAX:
        return Q(pk__in=sorted(ids))
    return fields | Q(Exists(TicketMessage.objects.filter(ticket=OuterRef("pk"), body__icontains=text)))


def ticket_get(*, tenant: Tenant, ticket_id: int, now: datetime | None = None) -> Ticket | None:
    """One ticket of the tenant with its list figures, or None (also for another tenant's id)."""
    return ticket_queryset(tenant=tenant, now=now).filter(pk=ticket_id).first()


def ticket_messages(*, tenant: Tenant, ticket: Ticket) -> QuerySet[TicketMessage]:
    """The ticket's messages in conversation order (notes included)."""
    return (
        TicketMessage.objects.filter(tenant=tenant, ticket=ticket)
        .select_related("author")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
        .order_by("sent_at", "id")
    )


def attachment_get(*, tenant: Tenant, ticket_id: int, attachment_id: int) -> Attachment | None:
    """One file of one of the tenant's tickets, or None (also for another tenant's ids)."""
    return Attachment.objects.filter(tenant=tenant, ticket_id=ticket_id, pk=attachment_id).first()


@dataclass(frozen=True)
class TicketStats:
    by_status: dict[str, int]
    total: int
    unassigned: int  # OPEN or PENDING with nobody assigned
    assigned_to_me: int  # OPEN or PENDING assigned to the caller
    unanswered: int
    overdue: int
    oldest_unanswered_since: datetime | None  # when the longest-waiting buyer started waiting
    oldest_unanswered_ticket_id: int | None
    oldest_unanswered_age_seconds: int | None


def ticket_stats(*, tenant: Tenant, user_id: int, now: datetime | None = None) -> TicketStats:
    """The inbox header's figures, in four queries, none reading the messages of every ticket."""
    now = now or timezone.now()
    active = Q(status__in=ACTIVE_STATUSES)
    counts = Ticket.objects.filter(tenant=tenant).aggregate(
        total=Count("pk"),
        unassigned=Count("pk", filter=active & Q(assignee__isnull=True)),
        assigned_to_me=Count("pk", filter=active & Q(assignee_id=user_id)),
        **{status.value: Count("pk", filter=Q(status=status)) for status in TicketStatus},
    )
    annotated = Ticket.objects.filter(tenant=tenant)
    waiting = annotated.filter(_unanswered_q()).aggregate(
        unanswered=Count("pk"), overdue=Count("pk", filter=Q(response_due_at__lt=now))
    )
    # The buyer has been waiting since the first INBOUND message after the last live reply. The
    # response clock is that moment + 24 h, so the longest waits are among the earliest due times:
    # the exact time is computed for those few only (ticket_unanswered_due), not for every ticket.
    first_unanswered = Subquery(
        TicketMessage.objects.filter(
            ticket=OuterRef("pk"),
            direction=Direction.INBOUND,
            sent_at__gt=Coalesce(OuterRef("last_reply_at"), Value(_EPOCH)),
        )
        .order_by("sent_at")
        .values("sent_at")[:1]
    )
    earliest_due = annotated.filter(_unanswered_q()).order_by(F("response_due_at").asc(nulls_last=True), "pk")
    oldest = (
        annotated.filter(pk__in=list(earliest_due.values_list("pk", flat=True)[:OLDEST_CANDIDATES]))
        .annotate(waiting_since=first_unanswered)
        .filter(waiting_since__isnull=False)
        .order_by("waiting_since", "pk")
        .values_list("pk", "waiting_since")
        .first()
    )
    oldest_id, oldest_since = oldest if oldest else (None, None)
    return TicketStats(
        by_status={status.value: counts[status.value] for status in TicketStatus},
        total=counts["total"],
        unassigned=counts["unassigned"],
        assigned_to_me=counts["assigned_to_me"],
        unanswered=waiting["unanswered"],
        overdue=waiting["overdue"],
        oldest_unanswered_since=oldest_since,
        oldest_unanswered_ticket_id=oldest_id,
        oldest_unanswered_age_seconds=max(0, int((now - oldest_since).total_seconds())) if oldest_since else None,
    )
