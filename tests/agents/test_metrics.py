"""After a known stream the metrics equal the known outcome counts; the consumer lag is
the highwater minus the position of each assigned input and internal partition."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from models.replay import Replayer, read_records
from models.settings import Settings
from streams.agents import Service
from streams.metrics import Metrics
from tests.agents.test_processor import Harness
from tests.golden import SPEC


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_equal_the_outcomes_of_the_mixed_example() -> None:
    settings = Settings()
    lines = (SPEC / "example-mixed.events.jsonl").read_bytes().splitlines()
    replay = Replayer(settings)
    h = Harness(settings)
    metrics = Metrics()
    h.p.metrics = metrics
    metrics.watch(h.p.tallies)
    consumed = 0
    for _, topic, value, size, _ in read_records(lines, settings.max_payload_bytes):
        replay.feed(topic, value, size=size)
        h.feed(topic, value, key=None if isinstance(value, str) else "auto")
        h.pump()
        consumed += 1
    got = samples(metrics)

    def total(name: str, **labels: str) -> float:
        return sum(
            v
            for (n, ls), v in got.items()
            if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
        )

    # every input record consumed is counted once under its input topic …
    inputs = settings.topics.input_kinds()
    assert sum(total("profitwatch_input_records_total", topic=t) for t in inputs) == consumed
    # … and the outcomes equal replay's
    for outcome in ("applied", "duplicate", "stale", "rejected"):
        assert (
            sum(total("profitwatch_input_records_total", topic=t, outcome=outcome) for t in inputs)
            == replay.outcomes[outcome]
        ), outcome
    for code, n in replay.rejections.items():
        assert total("profitwatch_rejected_records_total", code=code) == n
    sent = [(a["alert_id"], a["kind"]) for a in h.out("profitability-alerts")]
    kinds = [kind for _, kind in dict(sent).items()]  # each alert once
    assert len(sent) > len(kinds)  # the example redelivers triggers: some alerts go twice
    for kind in set(kinds):
        assert total("profitwatch_alerts_total", kind=kind) == kinds.count(kind)
        resent = [k for _, k in sent].count(kind) - kinds.count(kind)
        assert total("profitwatch_alerts_resent_total", kind=kind) == resent
    statuses = [s.value["status"] for s in replay.snapshots()]
    for status in ("profitable", "at_risk", "unprofitable"):
        assert total("profitwatch_customers", status=status) == statuses.count(status)
    assert total("profitwatch_processing_seconds_count") == consumed
    assert total("profitwatch_event_time_lag_seconds_count") == replay.outcomes["applied"]
    assert not any("customer" in k for (_, ls) in got for k, _ in ls)  # no customer labels


class FakeConsumer:
    """What the lag collector asks of Faust's consumer: its assignment and highwaters."""

    def __init__(self, highwaters: dict[TP, int | None], *, fail: set[TP] | None = None) -> None:
        self.highwaters = highwaters
        self.fail = fail or set()

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        if tp in self.fail:
            raise AssertionError("Partition is not assigned")  # as aiokafka says it
        return self.highwaters[tp]


class FakeApp:
    def __init__(self, consumer: FakeConsumer | None, read: dict[TP, int]) -> None:
        self._consumer = consumer
        self.monitor = SimpleNamespace(tp_read_offsets=read)

    @property
    def consumer(self) -> FakeConsumer:
        if self._consumer is None:
            raise ConsumerNotStarted("Consumer thread not yet started")
        return self._consumer


def lag_samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (dict(ls)["topic"], dict(ls)["partition"]): v
        for (name, ls), v in samples(metrics).items()
        if name == "profitwatch_consumer_lag_records"
    }


def test_consumer_lag_is_highwater_minus_position_of_input_and_internal_partitions() -> None:
    t = Settings().topics
    orders, internal = TP(t.orders, 0), TP(t.internal, 3)
    consumer = FakeConsumer(
        {
            orders: 120,  # read up to offset 99: position 100, 20 behind
            TP(t.orders, 1): 50,  # read to the end
            internal: 7,  # read up to offset 2: 4 behind
            TP(t.invoices, 2): 10,  # nothing read since the rebalance: no sample
            TP(t.tickets, 0): None,  # never fetched: highwater unknown
            TP(t.referrals, 1): 90,  # revoked between assignment() and highwater()
            TP("profitwatch-customers-changelog", 0): 500,  # not a stream's topic
            TP(t.sales_activities, 0): 3,  # a stale highwater (paused): not below 0
        },
        fail={TP(t.referrals, 1)},
    )
    read = {
        orders: 99,
        TP(t.orders, 1): 49,
        internal: 2,
        TP(t.tickets, 0): 5,
        TP(t.referrals, 1): 3,
        TP("profitwatch-customers-changelog", 0): 1,
        TP(t.sales_activities, 0): 8,
    }
    metrics = Metrics()
    metrics.watch_lag(FakeApp(consumer, read), (*t.input_kinds(), t.internal))
    assert lag_samples(metrics) == {
        (t.orders, "0"): 20,
        (t.orders, "1"): 0,
        (t.internal, "3"): 4,
        (t.sales_activities, "0"): 0,
    }
    read[TP(t.invoices, 2)] = 4  # a record read: the sample appears, at scrape time
    assert lag_samples(metrics)[(t.invoices, "2")] == 5


def test_consumer_lag_without_a_consumer_is_no_sample_and_no_error() -> None:
    metrics = Metrics()
    metrics.watch_lag(FakeApp(None, {}), ["orders"])
    text = metrics.exposition().decode()
    assert "# TYPE profitwatch_consumer_lag_records gauge" in text
    assert lag_samples(metrics) == {}


def test_the_worker_reports_the_lag_of_its_input_and_internal_topics(tmp_path: Path) -> None:
    settings = Settings(store="memory://", data_dir=tmp_path, sweep_interval_seconds=0)
    svc = Service(settings)
    # Before the worker starts (its consumer not started): the family, no sample.
    assert "# TYPE profitwatch_consumer_lag_records gauge" in svc.metrics.exposition().decode()
    assert lag_samples(svc.metrics) == {}
    t = settings.topics
    tps = [TP(topic, 1) for topic in (*t.input_kinds(), t.internal, "elsewhere")]
    svc.app.consumer = FakeConsumer(dict.fromkeys(tps, 10))  # type: ignore[assignment]
    for tp in tps:
        svc.app.monitor.tp_read_offsets[tp] = 6
    assert lag_samples(svc.metrics) == {(topic, "1"): 3 for topic, _ in tps[:-1]}
