"""The figures as people read them: rows for `keybuzz_metrics` and the dashboard's cards."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder

from operations.selectors import OpsFigures

OK, WARN, BAD = "ok", "warn", "bad"


def humanize_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    value: str
    detail: str = ""
    level: str = OK


def figure_rows(f: OpsFigures) -> list[Row]:
    stale = f.poll_stale_after_seconds
    total_connections = sum(f.connections_by_status.values())
    oldest = f.oldest_poll_age_seconds
    run = f.last_poll_run
    replies = f.replies_by_status
    queued_age = f.oldest_queued_reply_age_seconds
    everyone = " (all tenants)" if f.tenant else ""  # one poller run serves every tenant
    return [
        Row(
            "active_connections",
            "Active Amazon connections",
            str(f.active_connections),
            f"of {total_connections} Amazon connections",
        ),
        Row("messages_today", "Messages polled today", str(f.messages_today), "Amazon messages fetched since 00:00"),
        Row("tickets_today", "Amazon tickets today", str(f.tickets_today), "created since 00:00"),
        Row(
            "connections_error",
            "Connections in ERROR",
            str(f.connections_error),
            "",
            BAD if f.connections_error else OK,
        ),
        Row(
            "connections_needs_reauth",
            "Connections NEEDS_REAUTH",
            str(f.connections_needs_reauth),
            "the tenant must reconnect" if f.connections_needs_reauth else "",
            WARN if f.connections_needs_reauth else OK,
        ),
        Row(
            "oldest_poll_age",
            "Oldest last poll",
            humanize_seconds(oldest) if oldest is not None else "no active connection",
            f"{oldest} s, among active connections" if oldest is not None else "",
            BAD if f.active_connections and (oldest or 0) > stale else OK,
        ),
        Row(
            "last_poll_run",
            f"Last poll run{everyone}",
            f"{humanize_seconds(run.age_seconds)} ago" if run else "never",
            (
                f"took {run.seconds:.2f} s, {run.connections} connections, {run.failures} failures"
                if run
                else "no run recorded: is the poll_amazon cron installed?"
            ),
            BAD if (run is None and f.active_connections) or (run and run.age_seconds > stale) else OK,
        ),
        Row(
            "poll_runs_24h",
            f"Poll runs (24 h){everyone}",
            str(f.poll_runs_24h),
            f"{f.poll_failures_24h} failed connection polls",
            WARN if f.poll_failures_24h else OK,
        ),
        Row(
            "quarantined",
            "Quarantined messages",
            str(f.quarantined_total),
            f"today: {f.quarantined_today}",
            WARN if f.quarantined_today else OK,
        ),
        Row(
            "overdue_tickets",
            "Overdue tickets",
            str(f.overdue_tickets),
            "unanswered past their due time",
            WARN if f.overdue_tickets else OK,
        ),
        Row(
            "replies",
            "Replies queued / sent / failed",
            f"{replies.get('QUEUED', 0)} / {replies.get('SENT', 0)} / {replies.get('FAILED', 0)}",
            f"oldest queued: {humanize_seconds(queued_age)}" if queued_age is not None else "",
            WARN if replies.get("FAILED", 0) or (queued_age or 0) > stale else OK,
        ),
        Row(
            "poller",
            "Poller",
            "STALLED" if f.poller_stalled else "OK",
            f"nothing polled for more than {humanize_seconds(stale)}" if f.poller_stalled else "",
            BAD if f.poller_stalled else OK,
        ),
    ]


def figures_text(f: OpsFigures) -> str:
    scope = f"tenant {f.tenant}" if f.tenant else "all tenants"
    rows = figure_rows(f)
    width = max(len(row.label) for row in rows)
    lines = [f"KeyBuzz metrics, {scope}, at {f.generated_at:%Y-%m-%d %H:%M:%S %Z}"]
    for row in rows:
        line = f"{row.label:<{width}}  {row.value}"
        if row.detail:
            line += f"  ({row.detail})"
        lines.append(line)
    return "\n".join(lines)


def figures_json(f: OpsFigures) -> str:
    return json.dumps(f.as_dict(), cls=DjangoJSONEncoder, sort_keys=True)
