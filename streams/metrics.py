"""Prometheus metrics (prometheus-client), following Prometheus naming; no customer
id in any label.

Counters are read from the processor's own tallies when Prometheus scrapes (a custom
collector), so the per-record cost is a Counter increment the processor does anyway.
Only the two latency histograms are observed per record.

- profitwatch_input_records_total{topic, outcome}: outcome is applied, duplicate,
  stale, rejected or rekeyed (a re-keyed record is counted again, with its final
  outcome, under its input topic when it comes back through the internal topic);
- profitwatch_rejected_records_total{topic, code};
- profitwatch_alerts_total{kind}, and profitwatch_alerts_resent_total{kind}: alerts sent
  again, same alert_id, because the record that triggered them was redelivered;
- profitwatch_customers{status} and profitwatch_table_customers: the customers of this
  worker's partitions read since assignment (all of them after the first sweep or list
  query);
- profitwatch_event_time_lag_seconds: wall clock − occurred_at of applied events;
- profitwatch_processing_seconds: one record through the processor;
- profitwatch_sweep_duration_seconds: one partition's sweep;
- the order of application (contract section 9): profitwatch_held_records (input
  records held for their turn), profitwatch_hold_seconds (arrival to applied),
  profitwatch_order_enforced_total (a group went on without a queue that still held it
  back: `max_lag_wait_ms` or `max_idle_ms` ran out), profitwatch_late_records_total
  (applied with an event time earlier than their group's latest applied: lateness),
  profitwatch_order_pauses_total (topic-partitions paused by `max_held_records`);
- records taken in offset order (models/contiguity.py): profitwatch_offset_gaps_total
  (a record came after a gap: its partition was read again from the gap),
  profitwatch_offset_gaps_empty_total (of those, offsets that held no record), and
  profitwatch_skipped_acks_total (acknowledgements by Faust of records no agent took,
  refused: see streams/faust_private.py);
- profitwatch_consumer_lag_records{topic, partition}: records behind, for each input and
  internal topic-partition assigned to this worker: its end offset (the consumer's
  highwater, as of the last fetch) minus the position of Faust's stream (the offset
  after the last record read, from Faust's Monitor sensor). Computed at scrape time; a
  partition without a known highwater, or with no record read since this worker's last
  rebalance (Faust's Monitor forgets then), has no sample.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Event-time lag spans seconds (live) to years (backfills).
LAG_BUCKETS = (
    1,
    5,
    30,
    60,
    300,
    900,
    3600,
    6 * 3600,
    86400,
    7 * 86400,
    30 * 86400,
    365 * 86400,
    float("inf"),
)
HOLD_BUCKETS = (1e-3, 5e-3, 10e-3, 50e-3, 0.1, 0.5, 1, 2, 5, 10, 30, 60, float("inf"))
PROCESSING_BUCKETS = (50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, float("inf"))


class Metrics:
    """The service's metrics in their own registry (injectable for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.event_lag = Histogram(
            "profitwatch_event_time_lag_seconds",
            "Wall clock minus occurred_at of applied events.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.processing = Histogram(
            "profitwatch_processing_seconds",
            "Time to take one record through decode, engine, table and sends.",
            buckets=PROCESSING_BUCKETS,
            registry=self.registry,
        )
        self.sweep = Histogram(
            "profitwatch_sweep_duration_seconds",
            "Time to sweep one partition's customers.",
            registry=self.registry,
        )

        self.hold = Histogram(
            "profitwatch_hold_seconds",
            "Time an input record was held for its turn, from arrival to applied.",
            buckets=HOLD_BUCKETS,
            registry=self.registry,
        )

    def watch_order(
        self, order: Any, contiguity: Any = None, skipped_acks: Callable[[], int] | None = None
    ) -> None:
        """The order of application's gauges and counters (a models.group_order.GroupOrder,
        a models.contiguity.Contiguity and the consumer's refused acks)."""
        self.registry.register(_OrderCollector(order, contiguity, skipped_acks))

    def watch(self, tallies: Tallies) -> None:
        self.registry.register(_TallyCollector(tallies))

    def watch_lag(self, app: Any, topics: Iterable[str]) -> None:
        """The consumer lag of these topics' assigned partitions (a faust.App: its
        `consumer` and `monitor`, read at scrape time)."""
        self.registry.register(_LagCollector(app, topics))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Tallies:
    """What the processor counts; read at scrape time."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (topic, outcome)
        self.rejections: Counter[tuple[str, str]] = Counter()  # (topic, code)
        self.alerts: Counter[str] = Counter()
        self.alerts_resent: Counter[str] = Counter()  # same alert_id again, by kind
        self.statuses: Counter[str] = Counter()  # customers by status (cached ones)


class _TallyCollector(Collector):
    def __init__(self, tallies: Tallies) -> None:
        self.t = tallies

    def collect(self) -> Iterator[Metric]:
        t = self.t
        yield _counter(
            "profitwatch_input_records",
            "Input records by topic and outcome; the outcomes add up to records consumed.",
            ["topic", "outcome"],
            t.outcomes,
        )
        yield _counter(
            "profitwatch_rejected_records",
            "Records sent to the dead-letter topic, by topic and rejection code.",
            ["topic", "code"],
            t.rejections,
        )
        yield _counter("profitwatch_alerts", "Alerts emitted, by kind.", ["kind"], t.alerts)
        yield _counter(
            "profitwatch_alerts_resent",
            "Alerts sent again because their trigger was redelivered (same alert_id).",
            ["kind"],
            t.alerts_resent,
        )
        customers = GaugeMetricFamily(
            "profitwatch_customers",
            "Customers held by this worker, by status.",
            labels=["status"],
        )
        for status in ("new", "profitable", "at_risk", "unprofitable"):
            customers.add_metric([status], self.t.statuses.get(status, 0))
        yield customers
        yield GaugeMetricFamily(
            "profitwatch_table_customers",
            "Customers of this worker's partitions read since assignment.",
            value=sum(self.t.statuses.values()),
        )


class _OrderCollector(Collector):
    def __init__(self, order: Any, contiguity: Any, skipped_acks: Callable[[], int] | None) -> None:
        self.order = order
        self.contiguity = contiguity
        self.skipped_acks = skipped_acks

    def collect(self) -> Iterator[Metric]:
        o = self.order
        yield GaugeMetricFamily(
            "profitwatch_held_records",
            "Input records held for their turn in the order of application.",
            value=o.held,
        )
        yield CounterMetricFamily(
            "profitwatch_order_enforced",
            "Times a partition group went on without a queue that still held it back.",
            value=o.enforced,
        )
        yield CounterMetricFamily(
            "profitwatch_order_pauses",
            "Input topic-partitions paused because max_held_records were held.",
            value=o.pauses,
        )
        yield CounterMetricFamily(
            "profitwatch_late_records",
            "Records applied with an event time earlier than their group's latest applied.",
            value=o.late,
        )
        if self.contiguity is not None:
            yield CounterMetricFamily(
                "profitwatch_offset_gaps",
                "Records that came after a gap in their partition's offsets (read again).",
                value=self.contiguity.gaps,
            )
            yield CounterMetricFamily(
                "profitwatch_offset_gaps_empty",
                "Gaps in a partition's offsets that held no record when read again.",
                value=self.contiguity.empty,
            )
        if self.skipped_acks is not None:
            yield CounterMetricFamily(
                "profitwatch_skipped_acks",
                "Acknowledgements of records no agent took (skipped by Faust), refused.",
                value=self.skipped_acks(),
            )


class _LagCollector(Collector):
    """Records behind per assigned topic-partition: highwater minus position.

    Nothing here may raise into a scrape: no consumer yet (ConsumerNotStarted), a
    partition just revoked or never fetched, all mean no sample for it. The cost is a
    dict lookup and a read of the client's fetch state per assigned partition.
    """

    def __init__(self, app: Any, topics: Iterable[str]) -> None:
        self.app = app
        self.topics = frozenset(topics)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "profitwatch_consumer_lag_records",
            "Records behind: end offset minus the position of this worker's stream, by "
            "assigned input or internal topic-partition.",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self.lags().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family

    def lags(self) -> dict[tuple[str, int], int]:
        found: dict[tuple[str, int], int] = {}
        try:
            consumer = self.app.consumer
            assigned = consumer.assignment()
            # The offset of the last record Faust read of each partition (its Monitor,
            # always among the app's sensors, sees every record before the agents).
            read = self.app.monitor.tp_read_offsets
        except Exception as exc:  # no consumer yet, or not started
            log.debug("no consumer lag: %r", exc)
            return found
        for tp in assigned:
            try:
                if tp.topic not in self.topics:
                    continue  # changelogs: recovery, not the agents, reads them
                last = read.get(tp)
                end = consumer.highwater(tp) if last is not None else None
            except Exception as exc:  # revoked meanwhile, or an unknown partition
                log.debug("no consumer lag for %s: %r", tp, exc)
                continue
            if isinstance(last, int) and isinstance(end, int):
                # A highwater older than the last read (a paused partition's last
                # fetch) is no lag below zero.
                found[(tp.topic, tp.partition)] = max(end - (last + 1), 0)
        return found


def _counter(name: str, doc: str, labels: list[str], tally: Counter[Any]) -> CounterMetricFamily:
    """A counter family from a tally keyed by one label value or a tuple of them."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(tally.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return family
