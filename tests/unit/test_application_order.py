"""The order of application (contract section 9): the merge itself, replay's use of it,
and Kafka's partitioner that decides which queue a record is on."""

from __future__ import annotations

import io
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_murmur2

from models.application_order import REJECTED, HeadMerge, order_key
from models.partitioner import murmur2, partition_for, record_key
from models.replay import Replayer, ReplayRecord, read_records
from models.settings import Settings
from tests.builders import order, sales, ticket

SETTINGS = Settings()
TOPICS = list(SETTINGS.topics.input_kinds())  # the order of section 2: ties go by it
RANK = {t: i for i, t in enumerate(TOPICS)}
NOW = 1_790_000_000_000_000  # a fixed clock: DLQ records compare byte for byte


def partition(key: str) -> int:
    return partition_for(key.encode(), SETTINGS.partitions)


def customers_on(p: int, n: int = 2) -> list[str]:
    """`n` customer ids whose records land on partition `p`."""
    out = [c for c in (f"cust-{i}" for i in range(500)) if partition(c) == p]
    return out[:n]


A, B = customers_on(0)
C = customers_on(1)[0]
D = customers_on(3)[0]


def records(lines: list[tuple[str, Any]] | list[dict[str, Any]]) -> list[ReplayRecord]:
    """Replay-format lines, read as `replay` reads a file."""
    text = [json.dumps(x if isinstance(x, dict) else {"topic": x[0], "value": x[1]}) for x in lines]
    return list(read_records([t.encode() for t in text], SETTINGS.max_payload_bytes))


def applied(recs: list[ReplayRecord]) -> list[int]:
    """The line numbers in the order replay applies them: the same whether replay
    counted the queues first (a file) or not (stdin)."""
    counted = Replayer(SETTINGS, clock_us=NOW)
    ends = counted.queue_ends(recs)
    order = [n for n, _ in counted.applied(recs, ends)]
    streamed = [n for n, _ in Replayer(SETTINGS, clock_us=NOW).applied(recs)]
    assert streamed == order
    return order


# ---- the merge ------------------------------------------------------------------------


def test_head_merge_pops_the_least_head_and_keeps_each_queue_in_order() -> None:
    m: HeadMerge[str, str] = HeadMerge(["x", "y"])
    assert not m.ready and len(m) == 0 and m.peek() is None
    m.push("x", order_key(30, 0, 0), "x1")
    m.push("x", order_key(10, 0, 0), "x2")  # earlier, but behind x1 in its queue
    assert not m.ready and m.blocking() == ["y"]  # y may still receive an earlier record
    m.push("y", order_key(20, 0, 1), "y1")
    assert m.ready and len(m) == 3
    assert m.peek() == ((20, 0, 1), "y")
    assert m.pop()[1] == "y1"
    assert not m.ready  # y is empty again and behind
    m.behind("y", False)  # caught up: it holds nothing back
    assert m.ready and m.blocking() == []
    assert [m.pop()[1] for _ in range(2)] == ["x1", "x2"]
    assert not m.ready and m.blocking() == ["x"]
    with pytest.raises(IndexError):
        m.pop()


def test_a_caught_up_queue_that_receives_a_record_holds_nothing_back_when_empty() -> None:
    m: HeadMerge[str, str] = HeadMerge(["x", "y"])
    m.behind("x", False)
    m.behind("y", False)
    m.push("x", order_key(5, 0, 0), "x1")
    assert m.ready
    m.behind("y", True)  # records of y arrived on the broker, not yet here
    assert not m.ready
    m.behind("y", True)  # idempotent
    m.behind("y", False)
    m.behind("y", False)
    assert m.ready and m.pop()[1] == "x1"
    assert not m.ready  # nothing held


def test_head_merge_ties_by_partition_then_topic_and_rejected_first() -> None:
    m: HeadMerge[tuple[int, int], str] = HeadMerge()
    m.push((1, 0), order_key(5, 0, 1), "p0 invoices")
    m.push((0, 1), order_key(5, 1, 0), "p1 orders")
    m.push((0, 0), order_key(5, 0, 0), "p0 orders")
    m.push((4, 3), order_key(None, 3, 4), "rejected")
    assert order_key(None, 3, 4)[0] == REJECTED
    assert m.ready  # queues first named by a push block only once they are empty
    assert [m.pop()[1] for _ in range(4)] == ["rejected", "p0 orders", "p0 invoices", "p1 orders"]
    assert len(m.blocking()) == 4


def test_head_merge_drop_forgets_a_queue_and_what_it_held() -> None:
    m: HeadMerge[str, int] = HeadMerge(["x", "y", "z"])
    for i, q in enumerate("xyxy"):
        m.push(q, order_key(i, 0, "xyz".index(q)), i)
    assert not m.ready  # z is empty and behind
    assert m.drop("z") == [] and m.ready  # revoked: it holds nothing back any more
    assert m.drop("x") == [0, 2]
    assert m.drop("nope") == []
    assert len(m) == 2 and m.held("x") == 0 and m.held("y") == 2
    assert [m.pop()[1] for _ in range(2)] == [1, 3]
    assert m.blocking() == ["y"]


# ---- replay in the order of application: hand-made cases ------------------------------


def test_a_cross_topic_inversion_is_reordered() -> None:
    recs = records(
        [
            order(A, "2026-01-10", 100, 40),
            ticket(A, "2026-01-05", "t1", "phone", 10),
        ]
    )
    assert applied(recs) == [1, 0]


def test_an_inversion_within_one_topic_keeps_offset_order() -> None:
    recs = records(
        [
            order(A, "2026-01-10", 100, 40, order_id="o1"),
            order(A, "2026-01-05", 100, 40, order_id="o2"),
            ticket(A, "2026-01-07", "t1", "phone", 10),
        ]
    )
    # o1 heads its queue: the ticket (01-07) is earlier, o2 (01-05) waits behind o1.
    assert applied(recs) == [2, 0, 1]


def test_ties_go_by_topic_order() -> None:
    at = "2026-01-05T10:00:00Z"
    recs = records(
        [
            sales(A, at, 10),
            ticket(A, at, "t1", "phone", 10),
            order(A, at, 100, 40),
        ]
    )
    assert [TOPICS[RANK[recs[n][1]]] for n in applied(recs)] == [
        "orders",
        "support-tickets",
        "sales-activities",
    ]


def test_a_rejected_record_at_a_queue_head_goes_at_once() -> None:
    bad_currency = order(A, "2026-03-01", 100, 40, currency="XXX")
    recs = records(
        [
            ticket(A, "2026-01-01", "t1", "phone", 10),
            bad_currency,
            ticket(A, "2026-01-02", "t1", "phone", 20),
        ]
    )
    # The rejected order has no event time: at the head of its queue it goes first.
    assert applied(recs) == [1, 0, 2]
    behind = records(
        [
            order(A, "2026-02-01", 100, 40),
            bad_currency,
            ticket(A, "2026-01-01", "t1", "phone", 10),
            ticket(A, "2026-04-01", "t1", "phone", 20),
        ]
    )
    # Behind a valid record of its queue it waits for that record's turn.
    assert applied(behind) == [2, 0, 1, 3]


def test_records_of_different_partitions_interleave_by_time_then_partition() -> None:
    at = "2026-01-05T10:00:00Z"
    recs = records(
        [
            order(D, at, 100, 40),  # partition 3
            order(C, at, 100, 40),  # partition 1
            ticket(A, "2026-01-06", "t1", "phone", 10),  # partition 0, later
            sales(A, at, 10),  # partition 0, same time: partition goes first
        ]
    )
    assert [partition(D), partition(C), partition(A)] == [3, 1, 0]
    assert applied(recs) == [3, 1, 0, 2]


def test_the_key_overrides_the_customer_id_for_the_partition() -> None:
    topic, late = order(C, "2026-01-10", 100, 40)
    _, early = ticket(C, "2026-01-05", "t1", "phone", 10)
    lines = [
        {"topic": topic, "value": late, "key": D},  # on partition 3, with D's records
        {"topic": "support-tickets", "value": early},
    ]
    recs = records(lines)
    assert [r[4] for r in recs] == [D, C]
    # On partition 1 C's order would wait for C's earlier ticket; on partition 3 it is
    # the only orders record, and ties across partitions are by time: still 1, 0 here,
    # so force the difference with an equal event time.
    same = records(
        [
            {"topic": topic, "value": late | {"occurred_at": early["occurred_at"]}, "key": D},
            {"topic": "support-tickets", "value": early},
        ]
    )
    assert applied(same) == [1, 0]  # partition 1 (the ticket) before partition 3
    unkeyed = records([{"topic": topic, "value": same[0][2]}, lines[1]])
    assert applied(unkeyed) == [0, 1]  # both on partition 1: orders before tickets


def test_record_key_and_produce_agree() -> None:
    from streams.produce import to_kafka

    _, v = order(C, "2026-01-10", 100, 40)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"topic": "orders", "value": v}, C),
        ({"topic": "orders", "value": v, "key": "k"}, "k"),
        ({"topic": "orders", "value": v, "key": 7}, C),  # not a string: not a key
        ({"topic": "orders", "value": "{not json"}, None),
        ({"topic": "orders", "value": {"customer_id": 5}}, None),
    ]
    for line, key in cases:
        assert record_key(line) == key
        assert to_kafka(line)[1] == (key.encode() if key else None)


def test_lines_on_no_input_topic_are_dead_lettered_when_read() -> None:
    lines = [
        json.dumps({"topic": "orders", "value": order(A, "2026-01-10", 100, 40)[1]}),
        "not json at all",
        json.dumps({"topic": "shop-orders", "value": {}}),
        json.dumps({"topic": "orders"}),  # names an input topic: on its queue (partition 0)
    ]
    recs = list(read_records([x.encode() for x in lines], SETTINGS.max_payload_bytes))
    r = Replayer(SETTINGS, clock_us=NOW)
    counted = list(r.applied(recs, r.queue_ends(recs)))
    # Counted, every other queue is caught up: the order goes at once.
    assert [n for n, _ in counted] == [0, 1, 2, 3]
    codes = [o[0].value["error"]["code"] for _, o in counted[1:]]
    assert codes == ["malformed_json", "schema_violation", "schema_violation"]
    streamed = list(Replayer(SETTINGS, clock_us=NOW).applied(recs))
    # Streamed, the order waits for the other queues until the records end; the two
    # lines that lie on no queue go as they are read, the value-less one (on the
    # order's queue, A is on partition 0) after the order.
    assert [n for n, _ in streamed] == [1, 2, 0, 3]


def test_replay_counts_a_file_first_and_holds_back_only_what_the_order_needs() -> None:
    lines = [
        json.dumps({"topic": "orders", "value": order(A, "2026-01-01", 1, 1, event_id=f"e{i}")[1]})
        for i in range(200)
    ]
    recs = list(read_records([x.encode() for x in lines], SETTINGS.max_payload_bytes))

    def read_ahead(counted: bool) -> list[int]:
        """Per record applied: how many records had been read by then."""
        read = 0

        def source() -> Iterator[ReplayRecord]:
            nonlocal read
            for rec in recs:
                read += 1
                yield rec

        r = Replayer(SETTINGS, clock_us=NOW)
        ends = r.queue_ends(recs) if counted else None
        return [read for _ in r.applied(source(), ends)]

    # Counted, every other queue is known to stay empty: each order goes once read.
    assert read_ahead(counted=True) == list(range(1, 201))
    # Streamed (stdin), any queue may still receive an earlier record: all wait.
    assert read_ahead(counted=False) == [200] * 200
    # A seekable file is counted first; the order is the same either way.
    f = io.BytesIO(("\n".join(lines) + "\n").encode())
    assert [n for n, _ in Replayer(SETTINGS, clock_us=NOW).replay_lines(f)] == list(range(200))


# ---- properties -----------------------------------------------------------------------

CUSTOMERS = (A, B, C, D)


@st.composite
def stream(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Replay lines of a few customers, times drawn from a small range (ties happen),
    with rejected records and keys that are not the customer id among them."""
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 40))):
        cid = draw(st.sampled_from(CUSTOMERS))
        at = f"2026-01-{draw(st.integers(1, 9)):02d}T10:00:00Z"
        kind = draw(st.sampled_from(["order", "ticket", "sales", "rejected", "raw"]))
        value: dict[str, Any] | str  # a raw line's value is a string, not an object
        if kind == "order":
            topic, value = order(cid, at, 100, 40, order_id=f"o{i}", event_id=f"e{i}")
        elif kind == "ticket":
            topic, value = ticket(cid, at, f"t{i % 3}", "phone", 10 * i, event_id=f"e{i}")
        elif kind == "sales":
            topic, value = sales(cid, at, 10, event_id=f"e{i}")
        elif kind == "rejected":
            topic, value = order(cid, at, 100, 40, currency="XXX", event_id=f"e{i}")
        else:
            topic, value = draw(st.sampled_from(TOPICS)), "{not json"
        line: dict[str, Any] = {"topic": topic, "value": value}
        if draw(st.integers(0, 9)) == 0:
            line["key"] = draw(st.sampled_from(CUSTOMERS))
        out.append(line)
    return out


def queue_of(rec: ReplayRecord) -> tuple[str, int]:
    return rec[1], partition(rec[4]) if rec[4] is not None else 0


def reference_order(recs: list[ReplayRecord]) -> list[int]:
    """Section 9 as written, with every record known: repeatedly the least queue head."""
    r = Replayer(SETTINGS, clock_us=NOW)
    queues: dict[tuple[str, int], list[tuple[tuple[int, int, int], int]]] = defaultdict(list)
    for rec in recs:
        d = r.decode(rec[1], rec[2], size=rec[3], offset=rec[0])
        at = d[1] if isinstance(d, tuple) else None
        q = queue_of(rec)
        queues[q].append(((REJECTED if at is None else at, q[1], RANK[q[0]]), rec[0]))
    out = []
    while any(queues.values()):
        q = min((q for q in queues if queues[q]), key=lambda q: queues[q][0][0])
        out.append(queues[q].pop(0)[1])
    return out


def outputs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replay's output lines, the DLQ offset (the line number) left out."""
    r = Replayer(SETTINGS, clock_us=NOW)
    out = [json.loads(o.to_line()) for _, outs in r.applied(records(lines)) for o in outs]
    out += [json.loads(o.to_line()) for o in r.snapshots()]
    for o in out:
        if o["topic"] == SETTINGS.topics.dlq:
            o["value"]["error"].pop("offset")
    return out


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(stream())
def test_the_streaming_merge_is_the_order_of_section_9(lines: list[dict[str, Any]]) -> None:
    recs = records(lines)
    order_applied = applied(recs)
    assert order_applied == reference_order(recs)
    # A permutation of the input that keeps each (topic, partition) queue's order.
    assert sorted(order_applied) == [r[0] for r in recs]
    by_queue: dict[tuple[str, int], list[int]] = defaultdict(list)
    for n in order_applied:
        by_queue[queue_of(recs[n])].append(n)
    assert all(q == sorted(q) for q in by_queue.values())


@PROPERTY
@given(stream())
def test_a_file_in_event_time_order_is_applied_in_file_order(
    lines: list[dict[str, Any]],
) -> None:
    r = Replayer(SETTINGS, clock_us=NOW)
    valid = [x for x in records(lines) if isinstance(r.decode(x[1], x[2]), tuple)]

    def key(rec: ReplayRecord) -> tuple[str, int, int]:
        # Sorted by event time and topic order; records of different partitions at
        # the same instant go by partition (section 9), so the partition sits between.
        topic, p = queue_of(rec)
        return rec[2]["occurred_at"], p, RANK[topic]

    ordered = [lines[x[0]] for x in sorted(valid, key=key)]
    assert applied(records(ordered)) == list(range(len(ordered)))


@PROPERTY
@given(stream(), st.randoms(use_true_random=False))
def test_any_shuffle_keeping_each_topics_order_gives_the_same_outputs(
    lines: list[dict[str, Any]], rnd: random.Random
) -> None:
    per_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        per_topic[line["topic"]].append(line)
    picks = [t for t, q in per_topic.items() for _ in q]
    rnd.shuffle(picks)
    shuffled = [per_topic[t].pop(0) for t in picks]
    assert outputs(shuffled) == outputs(lines)


# ---- the partitioner ------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == kafka_murmur2(data) & 0x7FFFFFFF
    assert 0 <= murmur2(data) < 1 << 32


def test_partition_for_known_keys() -> None:
    # Kafka's DefaultPartitioner on 4 partitions, as every client computes it.
    for key in ("cust-00001", "c-1", "", "ü"):
        expected = (kafka_murmur2(key.encode()) & 0x7FFFFFFF) % 4
        assert partition_for(key.encode(), 4) == expected
