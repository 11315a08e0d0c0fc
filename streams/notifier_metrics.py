"""Prometheus metrics of the notifiers (`metrics_port` of their settings): read from the
notifier's own counts when Prometheus scrapes, as streams/metrics.py reads the
processor's, so the delivery loop pays nothing for them. No customer id in any label.

`profitwatch notify webhook`:
- profitwatch_webhook_alerts_total{outcome}: `delivered`, or the dead-letter reason
  (`rejected`, `exhausted`, `invalid_alert`: models/notifiers.py);
- profitwatch_webhook_attempts_total: HTTP attempts, retries included;
- profitwatch_webhook_last_delivered_timestamp_seconds: when an alert was last
  delivered (absent until one is).

`profitwatch notify alertmanager`:
- profitwatch_alertmanager_posts_total{result}: `delivered`, `refused` (400/422: not
  retried) or `retry` (5xx, 429, timeouts, connection errors: tried again);
- profitwatch_alertmanager_changes_total: customers whose alert changed, delivered;
- profitwatch_alertmanager_invalid_records_total: records neither snapshot, tombstone
  nor alert;
- profitwatch_alertmanager_firing_alerts: alerts kept firing, as of the last full
  re-send (every `resend_interval_seconds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.notifiers import UndeliverableReason

if TYPE_CHECKING:
    from streams.notify_alertmanager import Counts as AlertmanagerCounts
    from streams.notify_webhook import Counts as WebhookCounts

Families = Callable[[], Iterable[Metric]]


class _Read(Collector):
    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families()


def serve_metrics(port: int, families: Families, host: str = "127.0.0.1") -> WSGIServer:
    """/metrics on `host`:`port` (0: a free one, `server.server_port`), from a thread of
    its own; `server.shutdown()` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Read(families))
    server, _thread = start_http_server(port, host, registry=registry)
    return server


def webhook_families(counts: WebhookCounts) -> Families:
    def families() -> Iterator[Metric]:
        alerts = CounterMetricFamily(
            "profitwatch_webhook_alerts",
            "Alerts settled by the webhook notifier: delivered, or dead-lettered and why.",
            labels=["outcome"],
        )
        alerts.add_metric(["delivered"], counts.delivered)
        for reason in get_args(UndeliverableReason):
            alerts.add_metric([reason], counts.dead_lettered_by.get(reason, 0))
        yield alerts
        yield CounterMetricFamily(
            "profitwatch_webhook_attempts",
            "HTTP attempts of the webhook notifier, retries included.",
            value=counts.attempts,
        )
        if counts.last_delivered_at is not None:
            yield GaugeMetricFamily(
                "profitwatch_webhook_last_delivered_timestamp_seconds",
                "When the webhook notifier last delivered an alert (Unix time).",
                value=counts.last_delivered_at,
            )

    return families


def alertmanager_families(counts: AlertmanagerCounts) -> Families:
    def families() -> Iterator[Metric]:
        posts = CounterMetricFamily(
            "profitwatch_alertmanager_posts",
            "POSTs to Alertmanager by result: delivered, refused (not retried), retry.",
            labels=["result"],
        )
        refused = counts.refused_posts
        posts.add_metric(["delivered"], counts.posts - counts.failed_posts - refused)
        posts.add_metric(["refused"], refused)
        posts.add_metric(["retry"], counts.failed_posts)
        yield posts
        yield CounterMetricFamily(
            "profitwatch_alertmanager_changes",
            "Customers whose Alertmanager alert changed, delivered.",
            value=counts.changes,
        )
        yield CounterMetricFamily(
            "profitwatch_alertmanager_invalid_records",
            "Records on the snapshots or alerts topic that are none of theirs.",
            value=counts.invalid,
        )
        yield GaugeMetricFamily(
            "profitwatch_alertmanager_firing_alerts",
            "Alerts kept firing in Alertmanager, as of the last full re-send.",
            value=counts.firing,
        )

    return families
