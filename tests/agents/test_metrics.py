"""After a known stream the metrics equal the known outcome counts."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from models.replay import Replayer, read_records
from models.settings import Settings
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
