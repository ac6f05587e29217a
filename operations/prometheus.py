"""GET /metrics in Prometheus' format, with the official prometheus_client.

Every value is read from the database at scrape time by a custom collector: nothing is kept in
the web process's memory, so every gunicorn worker answers the same thing. The gauges are the
`ops_figures` (all tenants: no per-tenant label, so the series count does not grow with tenants
and no tenant is named); the poller's counters and duration histogram come from the PollCounter
rows each run increments (see marketplaces.polling.records for why the database).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from marketplaces.polling.records import DURATION_BUCKETS, bucket_counter_name
from operations.selectors import OpsFigures, ops_figures, poll_counters


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    if value is not None:  # unknown (e.g. no connection at all): the series is absent, not 0
        gauge.add_metric([], value)
    return gauge


def _labelled(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        gauge.add_metric([key], value)
    return gauge


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def figure_metrics(figures: OpsFigures) -> Iterator[Metric]:
    yield _labelled(
        "keybuzz_amazon_connections",
        "Amazon connections by effective status (a CONNECTED connection "
        "made with another SP-API app counts as NEEDS_REAUTH)",
        "status",
        figures.connections_by_status,
    )
    yield _gauge(
        "keybuzz_amazon_connections_active",
        "Amazon connections the poller polls (CONNECTED, current app)",
        figures.active_connections,
    )
    yield _gauge(
        "keybuzz_amazon_oldest_poll_age_seconds",
        "Age of the oldest last poll among active Amazon connections (never polled: since connected)",
        figures.oldest_poll_age_seconds,
    )
    yield _gauge("keybuzz_amazon_messages_today", "Amazon messages fetched since midnight UTC", figures.messages_today)
    yield _gauge("keybuzz_amazon_tickets_today", "Amazon tickets created since midnight UTC", figures.tickets_today)
    yield _gauge("keybuzz_quarantined_messages", "Messages in quarantine", figures.quarantined_total)
    yield _gauge(
        "keybuzz_quarantined_messages_today", "Messages quarantined since midnight UTC", figures.quarantined_today
    )
    yield _gauge(
        "keybuzz_tickets_overdue", "Open or pending tickets whose response is overdue", figures.overdue_tickets
    )
    yield _labelled(
        "keybuzz_replies", "Agents' replies by delivery status", "delivery_status", figures.replies_by_status
    )
    yield _gauge(
        "keybuzz_replies_oldest_queued_age_seconds",
        "Age of the oldest reply waiting to be sent",
        figures.oldest_queued_reply_age_seconds,
    )
    run = figures.last_poll_run
    yield _gauge(
        "keybuzz_poll_last_run_timestamp_seconds",
        "When the last poller run finished (Unix time)",
        _timestamp(run.finished_at) if run else None,
    )
    yield _gauge(
        "keybuzz_poll_last_run_age_seconds",
        "Seconds since the last poller run finished",
        run.age_seconds if run else None,
    )
    yield _gauge(
        "keybuzz_poll_last_run_duration_seconds", "Duration of the last poller run", run.seconds if run else None
    )
    yield _gauge(
        "keybuzz_poll_last_run_failures",
        "Connections that failed in the last poller run",
        run.failures if run else None,
    )


COUNTERS = [
    ("keybuzz_poll_runs", "Poller runs", "runs"),
    ("keybuzz_poll_connections", "Connections polled", "connections"),
    ("keybuzz_poll_failures", "Connection polls that failed (token, fetch or ingestion error)", "failures"),
    ("keybuzz_poll_messages_fetched", "Messages fetched from Amazon", "fetched"),
    ("keybuzz_poll_new_messages", "New messages stored", "new_messages"),
    ("keybuzz_poll_new_tickets", "New tickets created", "new_tickets"),
    ("keybuzz_poll_quarantined", "Messages quarantined by the poller", "quarantined"),
    ("keybuzz_poll_notices_recorded", "Amazon notices recorded from relay mailboxes", "recorded"),
    ("keybuzz_poll_mails_ignored", "Relay mailbox mails ignored (not from Amazon)", "ignored"),
    ("keybuzz_poll_mails_skipped_old", "Mails older than a new mailbox's backfill window", "skipped_old"),
]


def counter_metrics(counters: dict[str, float]) -> Iterator[Metric]:
    for name, documentation, key in COUNTERS:
        yield CounterMetricFamily(name, documentation, value=counters.get(key, 0.0))
    buckets = [(floatToGoString(bound), counters.get(bucket_counter_name(bound), 0.0)) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", counters.get("runs", 0.0)))
    yield HistogramMetricFamily(
        "keybuzz_poll_run_duration_seconds",
        "Duration of the poller's runs",
        buckets=buckets,
        sum_value=counters.get("seconds_sum", 0.0),
    )


class OpsCollector(Collector):
    """Reads everything once per scrape (nine queries)."""

    def collect(self) -> Iterator[Metric]:
        yield from figure_metrics(ops_figures())
        yield from counter_metrics(poll_counters())


def metrics_exposition(accept_header: str = "") -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics when Prometheus asks for it)."""
    registry = CollectorRegistry(auto_describe=False)  # no describe pass: one collect, one set of queries
    registry.register(OpsCollector())
    encoder, content_type = choose_encoder(accept_header)
    return encoder(registry), content_type
