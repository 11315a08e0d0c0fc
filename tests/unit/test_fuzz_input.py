"""Hostile input, in process (issue 13): records mutated from valid ones through the
service's decoder and processor, each compared with replay of the same bytes.

PROFITWATCH_FUZZ_RECORDS sets the seeded run's size (default 5,000, a few seconds);
PROFITWATCH_FUZZ_SEED its seed. The full run, 100,000 records or more:

    PROFITWATCH_FUZZ_RECORDS=100000 .venv/bin/pytest tests/unit/test_fuzz_input.py -k seeded -s
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import models.deadletter
from models.errors import REJECTION_CODES
from models.partitioner import partition_for
from models.settings import Settings
from tests.fuzz_records import (
    MUTATOR_NAMES,
    Fuzzed,
    FuzzFailure,
    InProcess,
    Stream,
    Tally,
    coverage_gaps,
    only,
    run,
)

FUZZ_RECORDS = int(os.environ.get("PROFITWATCH_FUZZ_RECORDS", "5000"))
FUZZ_SEED = int(os.environ.get("PROFITWATCH_FUZZ_SEED", "13"))
KINDS = ("order", "invoice", "ticket", "referral", "sales_activity")


def summary(t: Tally, seconds: float) -> str:
    return (
        f"{t.records} records in {seconds:.1f} s ({t.records / seconds:,.0f}/s): "
        f"{dict(t.outcomes)}; codes {dict(sorted(t.codes.items()))}; re-keyed {t.rekeyed}, "
        f"base64 originals {t.base64_originals}, alerts {t.alerts} (+{t.alerts_resent} resent)"
    )


# ~1.6 ms a record here (a loaded 2-CPU machine); 10 ms allowed for the full run.
@pytest.mark.timeout(max(300, FUZZ_RECORDS // 100))
def test_seeded_hostile_records_end_as_replay_says() -> None:
    started = time.perf_counter()
    tally, customers = run(Settings(), FUZZ_RECORDS, FUZZ_SEED)
    print(summary(tally, time.perf_counter() - started))
    assert tally.records == FUZZ_RECORDS
    assert sum(tally.outcomes.values()) == FUZZ_RECORDS  # each ended exactly one way
    assert customers >= 40  # final snapshots compared with replay's
    if FUZZ_RECORDS >= 2000:  # smaller runs may miss a rare case
        assert coverage_gaps(tally) == []
        assert set(tally.codes) == set(REJECTION_CODES)


def test_a_small_payload_limit_is_counted_in_bytes() -> None:
    """Another `max_payload_bytes`: the size cases follow it, just under and over."""
    s = Settings(max_payload_bytes=700)
    tally, _ = run(s, 1500, FUZZ_SEED + 1)
    assert tally.codes["payload_too_large"] > 100
    assert tally.expectations["size_limit"] > 20  # exact sizes around 700 checked


# ---- hypothesis: it picks the combinations and shrinks a failure to the least one ----

PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def one_record(check: InProcess, rec: Fuzzed) -> str:
    try:
        return check.feed(rec)
    finally:
        check.finish()


@PROPS
@given(
    kind=st.sampled_from(KINDS),
    names=st.lists(st.sampled_from(MUTATOR_NAMES), min_size=1, max_size=3, unique=True),
    seed=st.integers(0, 2**32),
)
def test_any_combination_of_mutations(kind: str, names: list[str], seed: int) -> None:
    s = Settings()
    stream = Stream(s.topics, s.partitions, s.max_payload_bytes, seed)
    rec = stream.mutated(0, kind, names)
    check = InProcess(s, seed=seed)
    # A valid record of the same customer first, so the mutated one meets a state.
    valid = stream.valid(1)
    check.feed(valid)
    one_record(check, rec)


@PROPS
@given(value=st.binary(max_size=400), topic=st.sampled_from(list(Settings().topics.input_kinds())))
@example(value=b'{"a":NaN}', topic="orders")
@example(value=b"\xef\xbb\xbf{}", topic="orders")
def test_arbitrary_bytes(value: bytes, topic: str) -> None:
    check = InProcess(Settings())
    one_record(check, Fuzzed(0, topic, 0, None, value, [], ("bytes",), None))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPS
@given(kind=st.sampled_from(KINDS), changes=st.dictionaries(st.text(max_size=25), JSON, max_size=4))
def test_arbitrary_json_over_a_valid_record(kind: str, changes: dict[str, Any]) -> None:
    """Any field, known or not, set to any JSON value."""
    s = Settings()
    stream = Stream(s.topics, s.partitions, s.max_payload_bytes, 0)
    value = stream.made.value(kind) | changes
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    cid = value.get("customer_id")
    key = cid.encode("utf-8", "surrogatepass") if isinstance(cid, str) else None
    partition = partition_for(key, s.partitions) if key else 0
    rec = Fuzzed(0, stream.topic_of[kind], partition, key, raw, [], (), None)
    one_record(InProcess(s), rec)


# ---- what the fuzzer found (models/events.py, models/decode.py) ----------------------


def _order(**fields: Any) -> bytes:
    base = {
        "event_id": "e1",
        "customer_id": "c-1",
        "occurred_at": "2026-01-05T10:00:00Z",
        "currency": "EUR",
        "order_id": "o1",
        "revenue": "10",
        "cost_of_goods": "5",
    }
    return json.dumps(base | fields).replace('"@', "").replace('@"', "").encode()


@pytest.mark.parametrize(
    ("topic", "raw", "code"),
    [
        # decimal.InvalidOperation in the ledger's quantize, the state half changed: Faust
        # restarted the ingest agent, and the record was lost (committed, not counted).
        ("orders", _order(revenue="@1e308@"), "schema_violation"),
        ("orders", _order(revenue="1" + "0" * 39), "schema_violation"),
        (
            "support-tickets",
            b'{"event_id":"e2","customer_id":"c-1","occurred_at":"2026-01-05T10:00:00Z",'
            b'"ticket_id":"t","channel":"phone","handling_minutes":1e40}',
            "schema_violation",
        ),
        # OverflowError: the UTC instant lies before year 1 (in the decoder for an
        # invoice, at the snapshot for the rest, and every later record of that
        # customer crashed too: its state held the instant).
        ("orders", _order(occurred_at="0001-01-01T00:00:00+23:59"), "schema_violation"),
        (
            "invoice-overdue",
            b'{"event_id":"e3","customer_id":"c-1","occurred_at":"0001-01-01T00:30:00+01:00",'
            b'"currency":"EUR","invoice_id":"i","amount_due":10,"due_date":"0001-01-01"}',
            "schema_violation",
        ),
        # NaN and Infinity are not JSON: accepted in unread fields, so the service took
        # records that are not JSON.
        ("orders", _order(x="@NaN@"), "malformed_json"),
        ("orders", _order(revenue="@Infinity@"), "malformed_json"),
    ],
)
def test_found_by_the_fuzzer(topic: str, raw: bytes, code: str) -> None:
    check = InProcess(Settings())
    key = b"c-1"
    rec = Fuzzed(0, topic, partition_for(key, 4), key, raw, [], ("found",), only(code))
    assert one_record(check, rec) == "rejected"
    assert check.tally.codes == {code: 1}
    # The customer is not poisoned: its next record is applied.
    after = Fuzzed(1, "orders", partition_for(key, 4), key, _order(event_id="e9"), [], (), None)
    assert check.feed(after) == "applied"


@pytest.mark.parametrize("unit", [b"\x01", b'"', b"\xff", b"x"])
def test_a_giant_value_makes_a_dead_letter_a_producer_takes(unit: bytes) -> None:
    """700 KB the broker took: as JSON text its dead letter was up to 4.2 MB, which the
    producer refused (MessageSizeTooLargeError), so the commit failed and the partition
    stalled, on every restart again (models/deadletter.py)."""
    check = InProcess(Settings())
    check.keep_letters = True
    value = unit * 700_000
    assert one_record(check, Fuzzed(0, "orders", 0, None, value, [], (), None)) == "rejected"
    [(_, letter, _)] = check.letters.values()
    assert len(json.dumps(letter, ensure_ascii=False).encode()) < 600 * 1024  # of 1 MiB
    assert letter["original_size"] == len(value) and letter["original_encoding"] == "base64"


def test_the_largest_amount_still_applies() -> None:
    check = InProcess(Settings())
    raw = _order(revenue="@999999999999999.9999999999@", currency="GBP")
    rec = Fuzzed(0, "orders", partition_for(b"c-1", 4), b"c-1", raw, [], (), None)
    assert one_record(check, rec) == "applied"


# ---- the check itself fails when it should -------------------------------------------


def test_the_check_fails_on_a_wrong_expectation() -> None:
    rec = Fuzzed(
        0, "orders", partition_for(b"c-1", 4), b"c-1", _order(), [], (), only("malformed_json")
    )
    with pytest.raises(FuzzFailure, match="decoded as accepted"):
        InProcess(Settings()).feed(rec)


def test_the_check_fails_on_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise ArithmeticError("as decimal.InvalidOperation did")

    check = InProcess(Settings())
    monkeypatch.setattr(check.p, "_apply", boom)
    rec = Fuzzed(0, "orders", partition_for(b"c-1", 4), b"c-1", _order(), [], (), None)
    with pytest.raises(FuzzFailure, match="the processor crashed"):
        check.feed(rec)


def test_the_check_fails_when_a_dead_letter_loses_the_original(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = models.deadletter.dead_letter

    def lossy(*args: Any, original: Any, **kwargs: Any) -> Any:
        return real(*args, original=bytes(original)[:-1], **kwargs)

    # Both sides lose it alike, so only the round trip to the original bytes can tell.
    monkeypatch.setattr("streams.processor.dead_letter", lossy)
    monkeypatch.setattr("models.replay.dead_letter", lossy)
    rec = Fuzzed(0, "orders", 0, None, b"{not json", [], (), None)
    with pytest.raises(FuzzFailure, match="original is not the value as sent"):
        InProcess(Settings()).feed(rec)


def test_the_check_fails_when_the_final_state_differs() -> None:
    check = InProcess(Settings())
    check.feed(Fuzzed(0, "orders", partition_for(b"c-1", 4), b"c-1", _order(), [], (), None))
    check.r.states.clear()  # replay forgets the customer
    with pytest.raises(FuzzFailure, match="final snapshots differ"):
        check.finish()


def test_coverage_gaps_name_what_was_not_seen() -> None:
    gaps = coverage_gaps(Tally())
    assert {f"code {c}" for c in REJECTION_CODES} <= set(gaps)
    assert "outcome stale" in gaps and "mutation size_limit" in gaps


def test_streams_are_reproducible_from_their_seed() -> None:
    s = Settings()

    def values(seed: int) -> list[tuple[str, int, bytes | None, bytes | None]]:
        stream = Stream(s.topics, s.partitions, s.max_payload_bytes, seed)
        return [(r.topic, r.partition, r.key, r.value) for r in stream.records(300)]

    assert values(5) == values(5) != values(6)
