"""Every rejection code of spec section 7, produced where the spec says."""

from __future__ import annotations

import base64
import json

import pytest

from models.deadletter import dead_letter, kip1034_headers
from models.decode import Decoder
from models.errors import REJECTION_CODES, RejectedRecord
from models.events import OrderEvent, TicketEvent
from models.settings import Settings
from models.timeutil import to_us
from streams.cli import _timestamp
from tests.builders import dlq_codes, invoice, order, referral, run, sales, ticket

NOW = to_us(_timestamp("2026-06-01T00:00:00Z"))


def decode(topic: str, raw: object, settings: Settings | None = None) -> object:
    return Decoder(settings or Settings()).decode(topic, raw, now_us=NOW)


def code_of(topic: str, raw: object, settings: Settings | None = None) -> str:
    with pytest.raises(RejectedRecord) as exc:
        decode(topic, raw, settings)
    return exc.value.code


def test_valid_order_from_bytes_keeps_exact_decimals() -> None:
    _, v = order("c", "2026-01-05", "1000.10", 600, commission=0.1)
    raw = json.dumps(v).replace('"1000.10"', "1000.10").encode()
    e = decode("orders", raw)
    assert isinstance(e, OrderEvent)
    assert str(e.revenue) == "1000.10" and str(e.commission) == "0.1"


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    _, v = ticket("c", "2026-01-05", "t", "phone", 3)
    del v["escalated"]
    v["brand_new_field"] = {"x": 1}
    e = decode("support-tickets", v)
    assert isinstance(e, TicketEvent) and e.escalated is False and e.category == "question"


@pytest.mark.parametrize("raw", [b"{not json", b"", "[1,", b"\xff\xfe{}"])
def test_malformed_json(raw: object) -> None:
    assert code_of("orders", raw) == "malformed_json"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v.update(revenue=-5),  # negative money
        lambda v: v.update(revenue="NaN"),  # not finite
        lambda v: v.update(revenue=True),  # a bool is no amount
        lambda v: v.pop("order_id"),  # missing required field
        lambda v: v.update(occurred_at="2026-01-05T10:00:00"),  # naive timestamp
        lambda v: v.update(occurred_at=1767607200),  # a number is not RFC 3339
        lambda v: v.update(kind="exchanged"),
        lambda v: v.update(event_id=""),
        lambda v: v.update(customer_id="x" * 129),
        lambda v: v.update(currency="eur"),
        lambda v: v.pop("currency"),
    ],
)
def test_schema_violation(mutate: object) -> None:
    _, v = order("c", "2026-01-05", 10, 5)
    mutate(v)  # type: ignore[operator]
    assert code_of("orders", v) == "schema_violation"


def test_schema_violation_for_non_objects_and_unknown_topics() -> None:
    assert code_of("orders", b"[1, 2]") == "schema_violation"
    assert code_of("orders", b'"text"') == "schema_violation"
    assert code_of("no-such-topic", order("c", "2026-01-05", 1, 1)[1]) == "schema_violation"


def test_invoice_and_ticket_schema_rules() -> None:
    _, v = invoice("c", "2026-03-01", "i", 0, "2026-02-01")
    assert code_of("invoice-overdue", v) == "schema_violation"  # amount_due must be > 0
    _, v = invoice("c", "2026-03-01", "i", 10, "2026-02-01T00:00:00Z")
    assert code_of("invoice-overdue", v) == "schema_violation"  # a date, not a timestamp
    _, v = ticket("c", "2026-03-01", "t", "fax", 3)
    assert code_of("support-tickets", v) == "schema_violation"
    _, v = ticket("c", "2026-03-01", "t", "phone", 3)
    v["escalated"] = "yes"
    assert code_of("support-tickets", v) == "schema_violation"


def test_unknown_currency() -> None:
    assert (
        code_of("orders", order("c", "2026-01-05", 1, 1, currency="XYZ")[1]) == "unknown_currency"
    )
    assert (
        code_of("sales-activities", sales("c", "2026-01-05", 1, currency="JPY")[1])
        == "unknown_currency"
    )
    jpy = Settings(fx_rates={"EUR": 1, "JPY": "0.006"})
    assert decode("sales-activities", sales("c", "2026-01-05", 1, currency="JPY")[1], jpy)


def test_self_referral() -> None:
    assert code_of("referrals", referral("c", "2026-01-05", "c")[1]) == "self_referral"


def test_not_overdue() -> None:
    assert (
        code_of("invoice-overdue", invoice("c", "2026-03-01", "i", 10, "2026-03-01")[1])
        == "not_overdue"
    )
    assert (
        code_of("invoice-overdue", invoice("c", "2026-03-01", "i", 10, "2026-03-05")[1])
        == "not_overdue"
    )
    # one day past due is overdue; paid / written_off before the due date are fine
    assert decode("invoice-overdue", invoice("c", "2026-03-01", "i", 10, "2026-02-28")[1])
    assert decode(
        "invoice-overdue", invoice("c", "2026-03-01", "i", 10, "2026-03-05", status="paid")[1]
    )


def test_future_timestamp_respects_the_skew() -> None:
    assert code_of("orders", order("c", "2026-06-01T00:05:01Z", 1, 1)[1]) == "future_timestamp"
    assert decode("orders", order("c", "2026-06-01T00:04:59Z", 1, 1)[1])
    assert decode("orders", order("c", "2026-06-01T02:04:00+02:00", 1, 1)[1])  # offsets count


def test_payload_too_large() -> None:
    _, v = order("c", "2026-01-05", 1, 1)
    v["padding"] = "x" * 70_000
    assert code_of("orders", json.dumps(v).encode()) == "payload_too_large"
    small = Settings(max_payload_bytes=100)
    assert (
        code_of("orders", json.dumps(order("c", "2026-01-05", 1, 1)[1]), small)
        == "payload_too_large"
    )


def test_every_code_reaches_the_dlq_through_the_engine() -> None:
    big = order("c", "2026-01-05", 1, 1)[1] | {"padding": "x" * 70_000}
    records = [
        ("orders", "{not json"),
        order("c", "2026-01-05", -1, 1),
        order("c", "2026-01-05", 1, 1, currency="XYZ"),
        referral("c", "2026-01-05", "c"),
        invoice("c", "2026-03-01", "i", 10, "2026-03-02"),
        order("c", "2099-01-05", 1, 1),
        ("orders", json.dumps(big)),
    ]
    r, out = run(records)
    assert sorted(dlq_codes(out)) == sorted(REJECTION_CODES)
    assert r.outcomes == {"rejected": 7} and not r.states


def test_dead_letter_record_and_headers() -> None:
    rej = RejectedRecord("malformed_json", "bad", None)
    letter = dead_letter(
        rej,
        topic="orders",
        partition=2,
        offset=41,
        original=b"\xff\x00",
        received_at="2026-01-01T00:00:00+00:00",
    )
    wire = letter.to_wire()
    assert wire["original_encoding"] == "base64"
    assert base64.b64decode(wire["original"]) == b"\xff\x00"
    assert wire["error"] == {
        "code": "malformed_json",
        "message": "bad",
        "topic": "orders",
        "partition": 2,
        "offset": 41,
    }
    headers = dict(kip1034_headers(letter))
    assert headers["__streams.errors.exception"] == b"malformed_json"
    assert headers["__streams.errors.offset"] == b"41"
    text = dead_letter(
        rej, topic="orders", partition=0, offset=1, original="{x", received_at="t"
    ).to_wire()
    assert text["original"] == "{x" and "original_encoding" not in text
