"""The notifiers' /metrics (streams/notifier_metrics.py): served on their own port, read
from the notifier's counts at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import pytest

from streams.notifier_metrics import (
    Families,
    alertmanager_families,
    serve_metrics,
    webhook_families,
)
from streams.notify_alertmanager import Counts as AlertmanagerCounts
from streams.notify_webhook import Counts as WebhookCounts
from tests.integration.expectations import Samples, metric_samples


@pytest.fixture
def servers() -> Iterator[list[WSGIServer]]:
    started: list[WSGIServer] = []
    yield started
    for server in started:
        server.shutdown()


def scraped(servers: list[WSGIServer], families: Families) -> Samples:
    server = serve_metrics(0, families, host="127.0.0.1")
    servers.append(server)
    return metric_samples(server.server_port)


def test_the_webhook_notifiers_counts_at_each_scrape(servers: list[WSGIServer]) -> None:
    counts = WebhookCounts()
    families = webhook_families(counts)
    first = scraped(servers, families)
    assert first[("profitwatch_webhook_alerts_total", (("outcome", "delivered"),))] == 0
    assert "profitwatch_webhook_last_delivered_timestamp_seconds" not in {k[0] for k in first}
    counts.delivered, counts.attempts, counts.last_delivered_at = 7, 12, 1_700_000_000.5
    counts.dead_lettered_by.update(rejected=2, exhausted=1)
    got = scraped(servers, families)
    outcomes = {
        labels[0][1]: v for (name, labels), v in got.items() if name.endswith("alerts_total")
    }
    assert outcomes == {"delivered": 7, "rejected": 2, "exhausted": 1, "invalid_alert": 0}
    assert got[("profitwatch_webhook_attempts_total", ())] == 12
    assert got[("profitwatch_webhook_last_delivered_timestamp_seconds", ())] == 1_700_000_000.5


def test_the_alertmanager_notifiers_counts(servers: list[WSGIServer]) -> None:
    counts = AlertmanagerCounts(
        posts=10, failed_posts=3, refused_posts=1, changes=25, invalid=2, firing=40
    )
    got = scraped(servers, alertmanager_families(counts))
    posts = {labels[0][1]: v for (name, labels), v in got.items() if name.endswith("posts_total")}
    assert posts == {"delivered": 6, "refused": 1, "retry": 3}
    assert got[("profitwatch_alertmanager_changes_total", ())] == 25
    assert got[("profitwatch_alertmanager_invalid_records_total", ())] == 2
    assert got[("profitwatch_alertmanager_firing_alerts", ())] == 40
