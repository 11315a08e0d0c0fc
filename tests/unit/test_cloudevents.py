"""CloudEvents 1.0 over Kafka (contract section 2.10): the binary-mode headers of every
output, and structured-mode input decoded as the plain event it carries."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.record.memory_records import MemoryRecords

from models import cloudevents as ce
from models.deadletter import HEADER_CODE, HEADER_OFFSET
from models.decode import Decoder
from models.errors import RejectedRecord
from models.partitioner import partition_for
from models.replay import Replayer
from models.settings import Settings
from streams.processor import Processor
from streams.record_batches import RecordBatches
from tests.builders import order, ticket
from tests.golden import SPEC

NOW = 1_790_000_000_000_000  # 2026-09-21: after every example event
SETTINGS = Settings()
SOURCE = "/profitwatch/profitwatch"
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")
# RFC 3339 date-time, as section 5.6 of the RFC writes it (offset required).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

Sent = tuple[str, bytes | None, bytes, Any, int | None]


class Harness:
    """A processor whose sends are collected; internal records pumped back at once."""

    def __init__(self, settings: Settings = SETTINGS, *, coalesce: bool = False) -> None:
        self.settings = settings
        self.table: dict[bytes, bytes] = {}
        self.sent: list[Sent] = []
        self.p = Processor(settings, self.table, self._send, clock=lambda: NOW, coalesce=coalesce)
        self.offsets: dict[tuple[str, int], int] = {}
        self.internal_offset = 0

    def _send(
        self, topic: str, key: bytes | None, value: bytes, headers: Any, partition: int | None
    ) -> None:
        self.sent.append((topic, key, value, headers, partition))

    def feed(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Any = None,
        offset: int | None = None,
    ) -> None:
        part = partition_for(key, self.settings.partitions) if key else 0
        if offset is None:
            offset = self.offsets.get((topic, part), -1) + 1
            self.offsets[(topic, part)] = offset
        self.p.on_input(topic, part, offset, key, value, headers)
        self.pump()

    def pump(self) -> None:
        internal = self.settings.topics.internal
        while pending := [s for s in self.sent if s[0] == internal]:
            self.sent = [s for s in self.sent if s[0] != internal]
            for _, key, value, _, partition in pending:
                part = partition if partition is not None else partition_for(key or b"", 4)
                self.internal_offset += 1
                self.p.on_internal(part, self.internal_offset, key, value)

    def out(self, topic: str) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
        return [(json.loads(v), dict(h or [])) for t, _, v, h, _ in self.sent if t == topic]


def example_values(path: Path = SPEC / "example-c1.events.jsonl") -> list[tuple[str, Any]]:
    return [(r["topic"], r["value"]) for r in map(json.loads, path.read_text().splitlines())]


def envelope(value: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    """A structured-mode CloudEvent carrying `value` (the envelope's own id and time
    deliberately differ from the event's: they are transport metadata)."""
    return {
        "specversion": "1.0",
        "id": f"transport-{value.get('event_id', 'x')}",
        "source": "urn:example:upstream",
        "type": "com.example.event",
        "time": "2030-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": value,
    } | attrs


def raw(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def rfc3339(text: bytes) -> datetime:
    assert RFC3339.match(text.decode()), text
    return datetime.fromisoformat(text.decode())


def check_required(headers: dict[str, bytes], type_: str) -> None:
    assert set(REQUIRED) <= set(headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == SOURCE.encode()
    assert headers["ce_type"] == type_.encode()
    assert headers["content-type"] == b"application/json"
    assert uuid.UUID(headers["ce_id"].decode()).version == 5
    rfc3339(headers["ce_time"])


# ---- outputs: binary mode ------------------------------------------------------------


def test_the_source_names_the_application() -> None:
    assert ce.source_of("profitwatch") == SOURCE
    assert ce.source_of("pw team/a") == "/profitwatch/pw%20team%2Fa"  # a URI-reference
    assert Processor(SETTINGS, {}, lambda *a: None).ce_source == SOURCE


def test_alerts_carry_their_id_kind_and_as_of_and_a_resend_the_same() -> None:
    h = Harness()
    lines = example_values()
    for topic, value in lines:
        h.feed(topic, raw(value), key=b"c-1" if isinstance(value, dict) else None)
    alerts = h.out("profitability-alerts")
    # The file's second e5 (a new offset: an upstream re-send) is a duplicate, which
    # re-sends the alert e5 raised: same value, same headers.
    assert [a["kind"] for a, _ in alerts] == ["at_risk", "at_risk", "became_unprofitable"]
    assert alerts[0] == alerts[1]
    for alert, headers in alerts:
        check_required(headers, f"com.profitwatch.alert.{alert['kind']}")
        assert headers["ce_id"] == alert["alert_id"].encode()
        assert headers["ce_time"] == alert["as_of"].encode()
        assert rfc3339(headers["ce_time"]) == datetime.fromisoformat(alert["as_of"])
        assert headers["ce_subject"] == b"c-1"
    # e6 sent again by upstream (a new offset): a duplicate re-sends its alert, same id.
    topic, value = lines[-1]
    h.feed(topic, raw(value), key=b"c-1")
    [(again, headers)] = h.out("profitability-alerts")[len(alerts) :]
    assert again == alerts[-1][0] and headers == alerts[-1][1]


def test_snapshot_ids_differ_per_snapshot_and_stay_for_a_resend() -> None:
    h = Harness()
    first = order("c1", "2026-01-05", 100, 40, event_id="a")
    h.feed(first[0], raw(first[1]), key=b"c1")
    h.feed(first[0], raw(first[1]), key=b"c1")  # an upstream re-send: a duplicate
    second = ticket("c1", "2026-01-06", "t1", "phone", 30)
    h.feed(second[0], raw(second[1]), key=b"c1")
    h.feed(second[0], raw(second[1]), key=b"c1", offset=0)  # redelivered by Kafka
    snaps = h.out("profitability-snapshots")
    assert len(snaps) == 4
    for snap, headers in snaps:
        check_required(headers, "com.profitwatch.snapshot")
        assert headers["ce_time"] == snap["as_of"].encode()
        assert headers["ce_subject"] == b"c1"
    ids = [hd["ce_id"] for _, hd in snaps]
    assert snaps[0][0] == snaps[1][0] and ids[0] == ids[1]  # the same snapshot again
    assert snaps[2][0] != snaps[1][0] and ids[2] != ids[1]
    assert snaps[3] == snaps[2]  # after a crash, the same snapshot: the same event


def test_a_coalesced_snapshot_carries_the_same_headers_as_one_sent_at_once() -> None:
    at_once, coalesced = Harness(), Harness(coalesce=True)
    rec = order("c1", "2026-01-05", 100, 40, event_id="a")
    for h in (at_once, coalesced):
        h.feed(rec[0], raw(rec[1]), key=b"c1")
    assert coalesced.out("profitability-snapshots") == []
    coalesced.p.flush()
    assert coalesced.out("profitability-snapshots") == at_once.out("profitability-snapshots")


def test_snapshot_ids_follow_value_and_revision() -> None:
    value = b'{"customer_id":"c1","as_of":"2026-01-05T10:00:00+00:00"}'
    wire = json.loads(value)
    same = ce.snapshot_headers(SOURCE, wire, value, 7)
    assert same == ce.snapshot_headers(SOURCE, wire, value, 7)
    # A state back at an earlier value byte for byte, after more applied records.
    assert dict(same)["ce_id"] != dict(ce.snapshot_headers(SOURCE, wire, value, 8))["ce_id"]
    assert ce.snapshot_id("c1", value, 7) == dict(same)["ce_id"].decode()
    assert ce.snapshot_id("c1", value + b" ", 7) != ce.snapshot_id("c1", value, 7)
    assert ce.snapshot_id("c2", value, 7) != ce.snapshot_id("c1", value, 7)


def test_dead_letters_keep_kip1034_and_add_a_stable_id_per_source_record() -> None:
    h = Harness()
    h.feed("orders", b"{not json", key=b"k", offset=41)
    h.feed("orders", b"{not json", key=b"k", offset=41)  # redelivered: same source
    h.feed("orders", b"{not json", key=b"k", offset=42)
    [(t, _, _, first, _), (_, _, _, again, _), (_, _, _, other, _)] = h.sent
    assert t == "profitability-dlq"
    names = [k for k, _ in first]
    assert names[:5] == [
        HEADER_CODE,
        "__streams.errors.message",
        "__streams.errors.topic",
        "__streams.errors.partition",
        HEADER_OFFSET,
    ]
    headers = dict(first)
    check_required(headers, "com.profitwatch.deadletter")
    letter = json.loads(h.sent[0][2])
    assert headers["ce_time"] == letter["received_at"].encode()  # when it was judged
    assert "ce_subject" not in headers  # no customer named
    assert first == again
    assert dict(other)["ce_id"] != headers["ce_id"]


def test_a_dead_letter_names_its_customer_as_subject() -> None:
    h = Harness()
    value = order("c1", "2026-01-05", 100, 40)[1] | {"currency": "XXX"}
    h.feed("orders", raw(value), key=b"c1")
    [(letter, headers)] = h.out("profitability-dlq")
    assert letter["error"]["code"] == "unknown_currency"
    assert headers["ce_subject"] == b"c1"


def test_internal_records_carry_no_cloudevents_headers() -> None:
    h = Harness()
    rec = order("c1", "2026-01-05", 100, 40)
    h.p.on_input(rec[0], 0, 0, b"not-c1", raw(rec[1]))  # a wrong key: re-keyed
    [(topic, _, _, headers, _)] = h.sent
    assert topic == SETTINGS.topics.internal and headers is None


def test_snapshot_headers_reach_the_record_batches() -> None:
    batches = RecordBatches(lambda: None)
    hdrs = ce.snapshot_headers(SOURCE, {"customer_id": "c1", "as_of": None}, b"{}")
    batches.append("snap", 0, b"c1", b"{}", hdrs)
    batches.append("changelog", 0, b"c1", b"state")  # the table's records: no headers
    assert batches.pending() == [("snap", 0, b"c1", b"{}"), ("changelog", 0, b"c1", b"state")]
    assert batches.pending_headers() == [hdrs, None]
    assert "ce_time" not in dict(hdrs)  # no as_of: the optional attribute is left out
    [batch] = list(batches._batches([(b"c1", b"{}", hdrs), (b"c2", b"{}", None)]))
    read = list(MemoryRecords(bytes(batch._build())).next_batch())
    assert [list(r.headers) for r in read] == [hdrs, []]


# ---- inputs: structured mode ---------------------------------------------------------


def test_a_structured_event_decodes_as_the_plain_value() -> None:
    d = Decoder(SETTINGS)
    for topic, value in example_values():
        if not isinstance(value, dict):
            continue
        plain = d.decode_at(topic, raw(value), now_us=NOW)
        assert d.decode_at(topic, raw(envelope(value)), now_us=NOW) == plain
        # The event's own id and time decide, not the envelope's.
        assert plain[0].event_id == value["event_id"]
        # Parsed values (replay), and a record whose content-type says structured.
        assert d.decode_at(topic, envelope(value), now_us=NOW) == plain
        assert d.decode_at(topic, raw(envelope(value)), now_us=NOW, structured=True) == plain


def test_replay_of_a_structured_stream_equals_the_plain_one() -> None:
    lines = [json.loads(x) for x in (SPEC / "example-mixed.events.jsonl").read_text().splitlines()]
    # Keyed by customer id, as upstream keys its Kafka records: replay's default key
    # (section 9.3) is the plain value's customer_id, which an envelope does not have.
    wrapped = [
        r | {"key": r["value"]["customer_id"], "value": envelope(r["value"])}
        if isinstance(r.get("value"), dict) and "key" not in r
        else r
        for r in lines
    ]
    as_text = [  # some as raw text, as a Kafka value would be
        r | {"value": json.dumps(r["value"])}
        if n % 3 == 0 and isinstance(r.get("value"), dict)
        else r
        for n, r in enumerate(wrapped)
    ]

    def replayed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = Replayer(SETTINGS, clock_us=NOW)
        encoded = [json.dumps(x).encode() for x in records]
        out = [o for _, outs in r.replay_lines(encoded) for o in outs]
        out += r.snapshots()
        return [{"topic": o.topic, "key": o.key, "value": comparable(o.value)} for o in out]

    def comparable(value: dict[str, Any]) -> dict[str, Any]:
        """A dead letter's `original` is the envelope, and its message names the
        field inside it (`data.revenue`); the rest must be the same."""
        if "error" not in value:
            return value
        error = value["error"] | {"message": value["error"]["message"].replace("data.", "")}
        return {k: v for k, v in value.items() if k != "original"} | {"error": error}

    plain = replayed(lines)
    assert sum(o["topic"] == "profitability-alerts" for o in plain) > 3
    assert replayed(wrapped) == plain
    assert replayed(as_text) == plain


def test_a_structured_event_is_applied_and_rekeyed_like_the_plain_one() -> None:
    plain, structured = Harness(), Harness()
    rec = order("c1", "2026-01-05", 100, 40, event_id="a")
    ct = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    plain.feed(rec[0], raw(rec[1]), key=None)  # no key: through the internal topic
    structured.feed(rec[0], raw(envelope(rec[1])), key=None, headers=ct)
    assert structured.table == plain.table and b"c1" in plain.table
    assert structured.out("profitability-snapshots") == plain.out("profitability-snapshots")


def test_binary_mode_input_needs_nothing() -> None:
    """ce_* headers and a plain event value: the value is the event, as always."""
    h = Harness()
    rec = order("c1", "2026-01-05", 100, 40)
    binary = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"x"),
        ("ce_source", b"urn:example"),
        ("ce_type", b"com.example.order"),
        ("content-type", b"application/json"),
    ]
    h.feed(rec[0], raw(rec[1]), key=b"c1", headers=binary)
    assert h.p.outcomes[("orders", "applied")] == 1


GOOD = order("c1", "2026-01-05", 100, 40)[1]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (envelope(GOOD, specversion="0.3"), "specversion '0.3'"),
        (envelope(GOOD, specversion=1.0), "specversion"),
        ({k: v for k, v in envelope(GOOD).items() if k != "data"}, "data is missing"),
        (envelope(GOOD, data=None), "not a JSON object"),
        (envelope(GOOD, data=[GOOD]), "not a JSON object"),
        (envelope(GOOD, data=json.dumps(GOOD)), "not a JSON object"),
        (envelope(GOOD, data_base64="e30="), "data_base64"),
        (
            {k: v for k, v in envelope(GOOD).items() if k != "data"} | {"data_base64": "e30="},
            "data_base64",
        ),
        ({k: v for k, v in envelope(GOOD).items() if k != "id"}, "id must be"),
        (envelope(GOOD, source=""), "source must be"),
        (envelope(GOOD, type=7), "type must be"),
        (envelope(GOOD, time=1767607200), "time must be a string"),
        (envelope(GOOD, datacontenttype="text/plain"), "not JSON"),
        (envelope(GOOD | {"revenue": "lots"}), "data.revenue"),
    ],
)
def test_malformed_envelopes_are_schema_violations(value: dict[str, Any], says: str) -> None:
    d = Decoder(SETTINGS)
    for given in (raw(value), value):  # on the wire, and parsed (replay)
        with pytest.raises(RejectedRecord) as exc:
            d.decode_at("orders", given, now_us=NOW)
        assert exc.value.code == "schema_violation"
        assert says in exc.value.message
        # The customer is known when data names it: the DLQ record is keyed by it.
        named = isinstance(value.get("data"), dict)
        assert exc.value.customer_id == ("c1" if named else None)


def test_other_json_media_types_are_data_too() -> None:
    d = Decoder(SETTINGS)
    for ct in ("application/json; charset=utf-8", "application/vnd.orders+json", "text/json"):
        d.decode_at("orders", envelope(GOOD, datacontenttype=ct), now_us=NOW)
    d.decode_at(
        "orders", {k: v for k, v in envelope(GOOD).items() if k != "datacontenttype"}, now_us=NOW
    )


def test_the_structured_content_type_demands_an_envelope() -> None:
    h = Harness()
    for name, ct in [
        ("content-type", b"application/cloudevents+json"),
        ("Content-Type", b"Application/CloudEvents+JSON ; charset=UTF-8"),
    ]:
        h.feed("orders", raw(GOOD), key=b"c1", headers=[("trace", b"1"), (name, ct)])
    letters = h.out("profitability-dlq")
    assert [lt["error"]["code"] for lt, _ in letters] == ["schema_violation"] * 2
    assert "no CloudEvents envelope" in letters[0][0]["error"]["message"]
    assert h.p.outcomes[("orders", "applied")] == 0
    # A mapping (Faust may hand headers over so), a null value, other media types.
    assert ce.is_structured({"content-type": b"application/cloudevents+json"})
    assert not ce.is_structured([("content-type", None)])
    assert not ce.is_structured([("content-type", b"application/json")])
    assert not ce.is_structured([("ce_type", b"application/cloudevents+json")])


def test_a_structured_envelope_counts_its_whole_size() -> None:
    d = Decoder(Settings(max_payload_bytes=len(raw(GOOD)) + 10))
    d.decode_at("orders", raw(GOOD), now_us=NOW)
    with pytest.raises(RejectedRecord) as exc:
        d.decode_at("orders", raw(envelope(GOOD)), now_us=NOW)
    assert exc.value.code == "payload_too_large"


def test_derived_ids_are_uuid5_in_the_projects_namespace() -> None:
    name = "snapshot\x00c1\x007\x00{}"
    want = uuid.uuid5(ce.ID_NAMESPACE, name)
    assert ce.snapshot_id("c1", b"{}", 7) == str(want)
