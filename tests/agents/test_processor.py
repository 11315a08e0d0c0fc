"""The agents' logic without Faust: a dict for the table, a list for the topics."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from models import codec
from models.deadletter import dump_json
from models.partitioner import partition_for
from models.replay import Replayer, read_records
from models.settings import Settings
from models.timeutil import to_us
from streams.cli import _timestamp
from streams.processor import Processor
from tests.builders import order, referral, sales
from tests.golden import SPEC

NOW = 1_790_000_000_000_000  # 2026-09-21: after every example event


class Harness:
    """A processor whose sends are collected; internal records can be pumped back in."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.table: dict[bytes, bytes] = {}
        self.sent: list[tuple[str, bytes | None, bytes, Any, int | None]] = []
        self.p = Processor(self.settings, self.table, self._send, clock=lambda: NOW)
        self.offset = 0

    def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: Any, partition: int | None
    ) -> None:
        self.sent.append((topic, key, value, headers, partition))

    def feed(self, topic: str, value: Any, *, key: bytes | str | None = "auto") -> None:
        raw = (
            value
            if isinstance(value, bytes)
            else (value.encode() if isinstance(value, str) else dump_json(value).encode())
        )
        if key == "auto":
            cid = value.get("customer_id") if isinstance(value, dict) else None
            key = cid.encode() if cid else None
        part = partition_for(key, self.settings.partitions) if isinstance(key, bytes) else 0
        self.offset += 1
        self.p.on_input(topic, part, self.offset, key if isinstance(key, bytes) else None, raw)

    def pump(self) -> None:
        """Deliver internal records (re-keyed, links, credits) as Kafka would."""
        while True:
            pending = [s for s in self.sent if s[0] == self.settings.topics.internal]
            if not pending:
                return
            self.sent = [s for s in self.sent if s[0] != self.settings.topics.internal]
            for _, key, value, _, partition in pending:
                assert key is not None or partition is not None
                part = (
                    partition
                    if partition is not None
                    else partition_for(key or b"", self.settings.partitions)
                )
                self.offset += 1
                self.p.on_internal(part, self.offset, key, value)

    def out(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(v) for t, _, v, _, _ in self.sent if t == topic]


def test_a_good_record_updates_the_table_and_sends_a_snapshot() -> None:
    h = Harness()
    h.feed(*order("c1", "2026-01-05", 100, 40))
    state = codec.loads(h.table[b"c1"])
    assert state.events_applied == 1
    snaps = h.out("profitability-snapshots")
    assert [s["lifetime"]["revenue"] for s in snaps] == ["100.00"]
    assert h.p.outcomes[("orders", "applied")] == 1


def test_the_key_is_not_trusted_a_wrong_key_is_rekeyed() -> None:
    h = Harness()
    h.feed(*order("c1", "2026-01-05", 100, 40), key=b"someone-else")
    assert h.table == {}  # nothing applied on the wrong partition
    [(topic, key, value, _, _)] = h.sent
    assert (topic, key) == ("profitwatch-internal", b"c1")
    assert json.loads(value)["k"] == "event"
    h.pump()
    assert codec.loads(h.table[b"c1"]).events_applied == 1
    assert h.p.outcomes[("orders", "rekeyed")] == 1 and h.p.outcomes[("orders", "applied")] == 1


def test_a_missing_key_is_rekeyed_too() -> None:
    h = Harness()
    h.feed(*order("c1", "2026-01-05", 100, 40), key=None)
    h.pump()
    assert b"c1" in h.table


def test_bad_input_goes_to_the_dlq_with_kip1034_headers() -> None:
    h = Harness()
    h.feed("orders", b"\xff{not json", key=b"k")
    [(topic, key, value, headers, _)] = h.sent
    assert topic == "profitability-dlq" and key == b"k"
    letter = json.loads(value)
    assert letter["error"]["code"] == "malformed_json" and letter["original_encoding"] == "base64"
    assert dict(headers)["__streams.errors.exception"] == b"malformed_json"
    assert dict(headers)["__streams.errors.topic"] == b"orders"


def test_duplicates_resend_the_snapshot_but_change_nothing() -> None:
    h = Harness()
    topic, value = order("c1", "2026-01-05", 100, 40, event_id="x")
    h.feed(topic, value)
    before = h.table[b"c1"]
    h.feed(topic, value)
    assert h.table[b"c1"] == before
    assert len(h.out("profitability-snapshots")) == 2
    assert h.p.outcomes[("orders", "duplicate")] == 1


def test_a_record_redelivered_after_its_id_expired_is_still_a_duplicate() -> None:
    # A fast backfill can move a customer two windows on (2 x 90 days) between a
    # record's application and its redelivery after a crash: `seen` has forgotten the
    # id by then; the customer's position on the partition has not.
    h = Harness()
    topic, value = order("c1", "2026-01-05", 100, 40, event_id="early")
    h.feed(topic, value)
    early_offset = h.offset
    h.feed(*order("c1", "2026-09-01", 10, 4, event_id="late"))
    before = codec.loads(h.table[b"c1"])
    assert "early" not in before.seen
    part = partition_for(b"c1", h.settings.partitions)
    h.p.on_input(topic, part, early_offset, b"c1", dump_json(value).encode())
    after = codec.loads(h.table[b"c1"])
    assert after.lifetime == before.lifetime and after.events_applied == 2
    assert h.p.outcomes[("orders", "duplicate")] == 1
    assert after.positions == {f"order/{part}": early_offset + 1}
    # The same id at a new offset is an upstream re-send, not Kafka's: the contract
    # remembers ids for two windows only, so it is applied, as replay applies it.
    h.feed(topic, value)
    assert h.p.outcomes[("orders", "applied")] == 3


def test_a_credit_sent_again_after_its_id_expired_is_still_a_duplicate() -> None:
    h = Harness()
    h.feed(*referral("a", "2026-01-10", "b"))
    h.pump()
    topic, value = order("b", "2026-01-15", 1000, 600, commission=50, event_id="ob")
    h.feed(topic, value)
    order_offset = h.offset
    h.pump()
    h.feed(*sales("a", "2026-09-01", 1, event_id="sa"))  # the referrer moves on
    before = codec.loads(h.table[b"a"])
    assert before.lifetime[7] == 35 and "ob:referral" not in before.seen
    # The order is redelivered (b still knows it): it sends its credit again, a new
    # internal record down the same path, which the referrer knows by position.
    b_part = partition_for(b"b", h.settings.partitions)
    h.p.on_input(topic, b_part, order_offset, b"b", dump_json(value).encode())
    assert [json.loads(v)["k"] for t, _, v, _, _ in h.sent if t == h.settings.topics.internal] == [
        "credit"
    ]
    h.pump()
    after = codec.loads(h.table[b"a"])
    assert after.lifetime == before.lifetime
    assert h.p.outcomes[(h.settings.topics.internal, "duplicate")] == 1
    assert after.positions[f"~order/{b_part}"] == order_offset


def test_an_upstream_resend_forwards_nothing_a_kafka_redelivery_forwards_again() -> None:
    # The same order id at a new offset was sent twice upstream: the first one's credit
    # was delivered before its offset was committed, so nothing is forwarded again (the
    # copy would reach the referrer at a new position, past what positions can tell).
    # The same offset again is Kafka's redelivery: its credit may have been lost.
    h = Harness()
    h.feed(*referral("a", "2026-01-10", "b"))
    h.pump()
    topic, value = order("b", "2026-01-15", 1000, 600, commission=50, event_id="ob")
    h.feed(topic, value)
    first = h.offset
    h.pump()
    internal = h.settings.topics.internal
    h.feed(topic, value)  # upstream re-send
    assert [s for s in h.sent if s[0] == internal] == []
    b_part = partition_for(b"b", h.settings.partitions)
    h.p.on_input(topic, b_part, first, b"b", dump_json(value).encode())  # redelivery
    assert [json.loads(v)["src"] for t, _, v, _, _ in h.sent if t == internal] == [
        [f"order/{b_part}", first]
    ]
    h.pump()
    assert codec.loads(h.table[b"a"]).lifetime[7] == 35


def test_a_rekeyed_order_delivered_twice_credits_once_whatever_the_ids() -> None:
    # A record with a wrong key goes through the internal topic; if its input offset
    # comes again, so does a second copy at a new internal offset. Its credit names the
    # input position and the internal partition it passed, the same for both copies.
    h = Harness()
    h.feed(*referral("a", "2026-01-10", "b"))
    h.pump()
    topic, value = order("b", "2026-01-15", 1000, 600, commission=50, event_id="ob")
    h.feed(topic, value, key=b"not-b")
    rekeyed = [s for s in h.sent if s[0] == h.settings.topics.internal]
    h.pump()
    h.sent.extend(rekeyed)  # the input offset came again: re-keyed again
    h.pump()
    a = codec.loads(h.table[b"a"])
    assert a.lifetime[7] == 35
    b_part = partition_for(b"b", h.settings.partitions)
    wrong = partition_for(b"not-b", h.settings.partitions)
    assert f"~order/{wrong}@internal/{b_part}" in a.positions
    assert h.p.outcomes[("orders", "duplicate")] == 1  # the second copy, at b
    assert h.p.outcomes[(h.settings.topics.internal, "duplicate")] == 1  # its credit, at a


def test_a_redelivered_trigger_resends_its_alert_with_the_same_id() -> None:
    # A crash can leave the state (with the record applied) in the changelog and the
    # alert not in its topic; the redelivered record is a duplicate, and re-sends it.
    h = Harness(Settings(grace_days=0))
    h.feed(*order("c1", "2026-01-05", 100, 40, event_id="o1"))
    topic, value = sales("c1", "2026-01-06", 500, event_id="s1")
    h.feed(topic, value)
    first = h.out("profitability-alerts")
    assert [(a["kind"], a["trigger_event_id"]) for a in first] == [("at_risk", "s1")]
    h.feed(*order("c1", "2026-01-07", 10, 5, event_id="o2"))
    h.feed(*order("c1", "2026-01-07", 10, 5, event_id="o2"))  # triggered nothing
    assert h.out("profitability-alerts") == first
    h.feed(topic, value)
    assert h.out("profitability-alerts") == first + first
    assert h.p.tallies.alerts_resent["at_risk"] == 1


def test_referrals_travel_across_partitions_as_links_and_credits() -> None:
    h = Harness()
    h.feed(*referral("a", "2026-01-10", "b"))
    h.pump()
    assert codec.loads(h.table[b"b"]).referred_by == "a"
    h.feed(*order("b", "2026-01-15", 1000, 600, commission=50, event_id="ob"))
    h.pump()
    a = codec.loads(h.table[b"a"])
    assert a.lifetime[7] == 35 and "ob:referral" in a.seen


def test_sweep_runs_per_partition() -> None:
    h = Harness()
    h.feed(*order("c1", "2026-01-05", 1000, 100))
    h.feed(*sales("c1", "2026-03-01", 10))
    part = partition_for(b"c1", h.settings.partitions)
    h.sent.clear()
    may = to_us(_timestamp("2026-05-01T00:00:00Z"))  # the order aged out, the sales did not
    assert h.p.sweep_partition((part + 1) % h.settings.partitions, may) == 0
    assert h.p.sweep_partition(part, may) == 1
    assert [a["kind"] for a in h.out("profitability-alerts")] == ["at_risk"]
    assert codec.loads(h.table[b"c1"]).as_of == may


def test_a_sweep_goes_in_slices_with_continuation_records() -> None:
    # A whole partition at once blocks the event loop for seconds with many customers:
    # each internal record sweeps `sweep_batch_customers`, then asks for the rest.
    h = Harness(Settings(sweep_batch_customers=2))
    part = partition_for(b"c1", h.settings.partitions)
    ids = [f"c{i}" for i in range(60) if partition_for(f"c{i}".encode(), 4) == part][:5]
    for cid in ids:
        h.feed(*order(cid, "2026-01-05", 1000, 100))
    h.sent.clear()
    may = to_us(_timestamp("2026-05-01T00:00:00Z"))
    h.p.on_internal(part, 1000, None, h.p.sweep_request(may))
    continuations = []
    while pending := [s for s in h.sent if s[0] == h.settings.topics.internal]:
        h.sent = [s for s in h.sent if s[0] != h.settings.topics.internal]
        (_, key, value, _, partition), *more = pending
        assert not more and key is None and partition == part  # one, to the same partition
        continuations.append(json.loads(value)["after"])
        h.p.on_internal(part, 1000 + len(continuations), None, value)
    assert continuations == sorted(ids)[1:4:2]  # after the 2nd and the 4th
    assert all(codec.loads(h.table[c.encode()]).as_of == may for c in ids)


def test_coalesced_states_and_snapshots_are_written_once_per_customer_at_a_flush() -> None:
    h = Harness()
    h.p.coalesce = True
    for i in range(3):
        h.feed(*order("c1", f"2026-01-0{i + 1}", 100, 40))
    h.feed(*order("c2", "2026-01-05", 100, 40))
    assert h.out("profitability-snapshots") == [] and h.table == {}  # until a commit
    assert h.p.flush() == (2, 2)
    assert codec.loads(h.table[b"c1"]).events_applied == 3
    snaps = h.out("profitability-snapshots")
    assert [(s["customer_id"], s["events_applied"]) for s in snaps] == [("c1", 3), ("c2", 1)]
    h.p.forget()  # a revoke pays what is owed too
    h.feed(*order("c1", "2026-01-09", 1, 1))
    h.p.forget()
    assert h.out("profitability-snapshots")[-1]["events_applied"] == 4
    assert codec.loads(h.table[b"c1"]).events_applied == 4
    assert h.p.flush() == (0, 0)


def test_a_redelivered_duplicate_writes_its_state_again() -> None:
    """After a crash the local store can be ahead of the changelog (the store is
    written first); the redelivered records are duplicates then, and must still put
    the state into the changelog, or the next worker restoring it gets an older one."""
    h = Harness()
    h.p.coalesce = True
    topic, value = order("c1", "2026-01-05", 100, 40, event_id="x")
    h.feed(topic, value)
    assert h.p.flush() == (1, 1)
    h.p.forget()  # a restart: the state is read back from the store, which may be
    stored = h.table[b"c1"]  # ahead of the changelog
    h.feed(topic, value)
    assert h.p.outcomes[("orders", "duplicate")] == 1
    assert h.p.flush() == (1, 1) and h.table[b"c1"] == stored  # written again
    h.feed(*order("c2", "2026-01-05", 1, 1))
    assert h.p.flush() == (1, 1)  # c1 is not written again without a record for it


def test_a_changed_state_leaving_the_cache_is_written_first() -> None:
    h = Harness(Settings(state_cache_customers=1))
    h.p.coalesce = True
    h.feed(*order("c1", "2026-01-01", 100, 40))
    assert h.table == {}
    h.feed(*order("c2", "2026-01-02", 100, 40))  # c1 leaves the cache: its only copy
    assert list(h.table) == [b"c1"] and codec.loads(h.table[b"c1"]).events_applied == 1
    h.feed(*order("c1", "2026-01-03", 100, 40))  # read back from the table, c2 written
    assert codec.loads(h.table[b"c2"]).events_applied == 1
    assert h.p.flush() == (1, 2)
    assert codec.loads(h.table[b"c1"]).events_applied == 2


def test_a_malformed_internal_record_is_kept_not_fatal() -> None:
    h = Harness()
    h.p.on_internal(0, 1, b"x", b'{"k": "mystery"}')
    [(topic, _, value, _, _)] = h.sent
    assert topic == "profitability-dlq"
    assert json.loads(value)["error"]["topic"] == "profitwatch-internal"


def test_an_unreadable_state_stops_rather_than_overwrites() -> None:
    h = Harness()
    h.table[b"c1"] = b'{"v": 99}'
    with pytest.raises(Exception, match="version"):
        h.feed(*order("c1", "2026-01-05", 100, 40))
    assert h.table[b"c1"] == b'{"v": 99}'


@pytest.mark.parametrize(
    ("forget_every", "cache", "coalesce"),
    [(0, 10_000, False), (7, 10_000, False), (0, 2, False), (0, 2, True), (5, 3, True)],
)
def test_the_mixed_example_gives_replays_figures(
    forget_every: int, cache: int, coalesce: bool
) -> None:
    """Through the processor (cache dropped now and then, as on a rebalance, or too
    small to hold every customer; table writes coalesced until a flush every third
    record, as at commits), every customer's final state equals replay's; DLQ codes
    match as a multiset; the status gauge counts every customer once."""
    settings = Settings(state_cache_customers=cache)
    lines = (SPEC / "example-mixed.events.jsonl").read_bytes().splitlines()
    r = Replayer(settings)
    h = Harness(settings)
    h.p.coalesce = coalesce
    for n, topic, value, size, _ in read_records(lines, settings.max_payload_bytes):
        if coalesce and n % 3 == 0:
            h.p.flush()
        r.feed(topic, value, size=size)
        if isinstance(value, str):
            h.feed(topic, value, key=None)
        else:
            h.feed(topic, value)
        h.pump()
        if forget_every and n % forget_every == 0:
            h.p.forget()
    h.p.flush()
    final = {cid: r.model.snapshot_wire(s) for cid, s in r.states.items() if s.has_own_events}
    mine = {}
    for key, raw in h.table.items():
        s = codec.loads(raw)
        if s.has_own_events:
            mine[key.decode()] = h.p.model.snapshot_wire(s)
    assert mine == final
    assert sorted(d["error"]["code"] for d in h.out("profitability-dlq")) == sorted(
        r.rejections.elements()
    )
    assert len(h.p.cache) <= cache
    if not forget_every:
        statuses = Counter(s["status"] for s in final.values())
        assert +h.p.tallies.statuses == statuses


def test_the_query_index_follows_changes_and_rebuilds_from_the_table() -> None:
    import asyncio

    from models.query import row_of

    h = Harness()
    for i in range(7):
        h.feed(*order(f"c{i}", "2026-01-05", 100 + i, 40, event_id=f"o{i}"))

    def rows() -> dict[str, dict[str, Any]]:
        index = asyncio.run(h.p.query_index(chunk=3))  # several chunks
        return {cid.decode(): e.row for cid, e in index.items()}

    def expected() -> dict[str, dict[str, Any]]:
        return {
            cid.decode(): row_of(h.p.model.snapshot_wire(codec.loads(raw)))
            for cid, raw in h.table.items()
        }

    assert rows() == expected() and len(expected()) == 7
    h.feed(*order("c3", "2026-01-09", 900, 10, event_id="o3b"))
    assert rows()["c3"]["revenue"] == "1003.00"
    assert rows() == expected()
    h.p.forget()  # a rebalance: the index is rebuilt from the table on the next query
    assert not h.p.cache and not +h.p.tallies.statuses
    assert rows() == expected()
    assert sum(h.p.tallies.statuses.values()) == 7  # the status gauge counts them again
    assert asyncio.run(h.p.query_index()) is h.p._index
    assert h.p.snapshot_of(b"nobody") is None and b"nobody" not in h.p.cache
