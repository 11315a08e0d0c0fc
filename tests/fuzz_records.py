"""Hostile input records, mutated from valid ones, and the in-process check they must
pass. Shared by tests/unit/test_fuzz_input.py (in process: a budget in CI, 100,000+
records in the full run) and tests/integration/test_hostile_input.py (a running worker).

Everything is drawn from one `random.Random`: a seed reproduces a stream exactly.

The stream is built so that every record's outcome is the same in any order of
application (the worker applies re-keyed records late, and five topics interleave as
Kafka likes): every record has fresh ids (event, order, invoice, ticket, activity), so
the only duplicates are exact resends of a valid record and the only stale records are
ticket updates sent after a later update of the same ticket on the same queue;
referrals refer to customers that never order, so no credit depends on timing. Then
the counts per topic and outcome, and every customer's figures, are fixed by the
records alone, which is what lets a running worker be compared with in-process runs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from models import codec
from models.cloudevents import dead_letter_headers
from models.deadletter import (
    HEADER_CODE,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TOPIC,
    MAX_ORIGINAL_BYTES,
)
from models.errors import REJECTION_CODES
from models.partitioner import partition_for
from models.replay import OutputRecord, Replayer
from models.settings import Settings, Topics
from models.timeutil import to_us
from streams.processor import Processor

Headers = list[tuple[str, bytes]]

ACCEPTED: Final = "accepted"  # decoding gives an event (applied, duplicate or stale)
OUTCOMES: Final = ("applied", "duplicate", "stale", "rejected")
# Valid events fall in these 60 days: inside one window (90 days) and the dedupe
# horizon, so no figure depends on when the worker applies a late record.
START: Final = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_S: Final = 60 * 86400
# The in-process clock: after every valid event, long before the future ones (2099).
NOW_US: Final = to_us(datetime(2026, 9, 1, tzinfo=UTC))
CUSTOMERS: Final = 40
MONEY: Final = {
    "order": ("revenue", "cost_of_goods", "commission", "fulfillment_cost"),
    "invoice": ("amount_due",),
    "ticket": ("handling_minutes",),
    "referral": (),
    "sales_activity": ("cost",),
}
REQUIRED: Final = {
    "order": ("currency", "order_id", "revenue", "cost_of_goods"),
    "invoice": ("currency", "invoice_id", "amount_due", "due_date"),
    "ticket": ("ticket_id", "channel", "handling_minutes"),
    "referral": ("referred_customer_id",),
    "sales_activity": ("currency", "activity_id", "cost"),
}
OPTIONAL: Final = {
    "order": ("kind", "commission", "fulfillment_cost"),
    "invoice": ("status",),
    "ticket": ("escalated", "category"),
    "referral": (),
    "sales_activity": ("kind",),
}
COMMON: Final = ("event_id", "customer_id", "occurred_at")

Expect = frozenset[str] | None  # what decoding must give (codes or ACCEPTED); None: any


def only(*outcomes: str) -> frozenset[str]:
    return frozenset(outcomes)


SCHEMA: Final = only("schema_violation")
MALFORMED: Final = only("malformed_json")
OK: Final = only(ACCEPTED)


class Raw(str):
    """JSON text written as it is: numbers exactly as given, NaN, deep nesting."""


def to_json(value: Any, rng: random.Random | None = None, *, pretty: bool = False) -> str:
    """Compact JSON (or with whitespace between tokens); with `rng`, strings are
    sometimes written ASCII-escaped."""
    comma, colon = (",\n  ", ": ") if pretty else (",", ":")
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        items = (
            f"{to_json(str(k), rng)}{colon}{to_json(v, rng, pretty=pretty)}"
            for k, v in value.items()
        )
        return "{" + comma.join(items) + "}"
    if isinstance(value, list):
        return "[" + comma.join(to_json(v, rng, pretty=pretty) for v in value) + "]"
    ascii_only = rng is not None and isinstance(value, str) and rng.random() < 0.2
    return json.dumps(value, ensure_ascii=ascii_only)


@dataclass(frozen=True, slots=True)
class Fuzzed:
    """One input record as a producer would send it."""

    n: int  # its place in the stream
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: Headers
    mutations: tuple[str, ...]  # what was done to the value, the key, the headers
    expect: Expect  # what decoding its value must give
    intent: str | None = None  # the outcome an unmutated record must have

    def describe(self, limit: int = 300) -> str:
        v = self.value if self.value is None else self.value[:limit]
        return (
            f"#{self.n} {self.topic}[{self.partition}] key={self.key!r:.80} "
            f"mutations={list(self.mutations)} expect={sorted(self.expect or ())} "
            f"value={v!r}{' …' if self.value and len(self.value) > limit else ''}"
        )


@dataclass(slots=True)
class Draft:
    """A record being mutated: its kind, its value, and once serialised its bytes."""

    kind: str
    value: dict[str, Any]
    limit: int  # max_payload_bytes
    raw: bytes | None = None
    rng: random.Random | None = None

    def bytes(self) -> bytes:
        if self.raw is None:
            self.raw = to_json(self.value, self.rng).encode("utf-8")
        return self.raw


# ---- valid records -------------------------------------------------------------------


class Valid:
    """Valid records of the five kinds, each with fresh ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.serial = 0

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def when(self, offset_s: int | None = None) -> datetime:
        s = self.rng.randrange(SPAN_S) if offset_s is None else offset_s
        return START + timedelta(seconds=s, microseconds=self.rng.choice((0, 0, 123456)))

    def stamp(self, t: datetime) -> str:
        """RFC 3339 with one of several offsets: the same instant however written."""
        offset = self.rng.choice((0, 0, 0, 120, -330, 60 * 14, -60 * 12))
        local = t.astimezone(UTC) + timedelta(minutes=offset)
        text = local.replace(tzinfo=None).isoformat()
        if offset == 0 and self.rng.random() < 0.7:
            return text + "Z"
        sign = "+" if offset >= 0 else "-"
        return f"{text}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"

    def money(self, low: float = 0.0, high: float = 2000.0) -> Any:
        amount = f"{self.rng.uniform(low, high):.{self.rng.choice((0, 2, 2, 4))}f}"
        if float(amount) <= 0:
            amount = "1"
        return amount if self.rng.random() < 0.5 else Raw(amount)  # a string or a number

    def customer(self) -> str:
        return f"c-{self.rng.randrange(CUSTOMERS)}"

    def value(self, kind: str, *, at: datetime | None = None) -> dict[str, Any]:
        rng = self.rng
        t = at or self.when()
        v: dict[str, Any] = {
            "event_id": self.next_id("ev"),
            "customer_id": self.customer(),
            "occurred_at": self.stamp(t),
        }
        if kind == "order":
            v |= {
                "currency": rng.choice(("EUR", "EUR", "USD", "GBP", "CHF")),
                "order_id": self.next_id("o"),
                "kind": rng.choice(("placed", "placed", "placed", "returned")),
                "revenue": self.money(10, 3000),
                "cost_of_goods": self.money(0, 1500),
            }
            if rng.random() < 0.6:
                v["commission"] = self.money(0, 100)
            if rng.random() < 0.4:
                v["fulfillment_cost"] = self.money(0, 50)
        elif kind == "invoice":
            status = rng.choice(("overdue", "overdue", "paid", "written_off"))
            late = rng.randrange(1, 200) if status == "overdue" else rng.randrange(-20, 200)
            v |= {
                "currency": rng.choice(("EUR", "USD", "GBP")),
                "invoice_id": self.next_id("i"),
                "status": status,
                "amount_due": self.money(1, 5000),
                "due_date": (t.astimezone(UTC).date() - timedelta(days=late)).isoformat(),
            }
        elif kind == "ticket":
            v |= {
                "ticket_id": self.next_id("t"),
                "channel": rng.choice(("phone", "email", "chat", "onsite", "self_service")),
                "handling_minutes": self.money(0, 300),
            }
            if rng.random() < 0.5:
                v["escalated"] = rng.random() < 0.2
            if rng.random() < 0.5:
                v["category"] = rng.choice(("complaint", "question", "incident", "request"))
        elif kind == "referral":
            # Referred customers never order: no credit, so nothing depends on timing.
            v["referred_customer_id"] = self.next_id("r")
        else:
            v |= {
                "currency": rng.choice(("EUR", "CHF")),
                "activity_id": self.next_id("a"),
                "kind": rng.choice(("call", "visit", "demo", "proposal", "account_review")),
                "cost": self.money(1, 400),
            }
        return v


# ---- value mutators ------------------------------------------------------------------
# Each mutates a Draft in place and says what decoding must then give (when it is the
# only mutation). "dict" mutators change the value before it is serialised, "bytes"
# mutators the serialised text; a record's dict mutators run first.

Mutator = Callable[[random.Random, Draft], Expect]

_WRONG_FOR_TEXT: Final[tuple[Any, ...]] = (0, Raw("1.5"), True, None, [], {}, ["x"], Raw("-7"))
_WRONG_FOR_MONEY: Final[tuple[Any, ...]] = (
    True,
    False,
    None,
    [],
    {"v": 1},
    "ten",
    "",
    "1,5",
    "0x10",
    [1],
)
_WRONG_FOR_BOOL: Final = ("true", "false", 1, 0, None, "yes", [True])
_INVALID_UTF8: Final = (
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc0\x80",  # overlong NUL
    b"\xc3",  # a lead byte without its continuation
    b"\xe2\x82",  # truncated 3-byte sequence
    b"\xed\xa0\x80",  # a UTF-16 surrogate (CESU-8)
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
)


def wrong_type(rng: random.Random, d: Draft) -> Expect:
    known = [k for k in d.value if k in (*COMMON, *REQUIRED[d.kind], *OPTIONAL[d.kind])]
    if not known:
        return None
    name = rng.choice(known)
    if name in MONEY[d.kind]:
        d.value[name] = rng.choice(_WRONG_FOR_MONEY)
    elif name == "escalated":
        d.value[name] = rng.choice(_WRONG_FOR_BOOL)
    else:
        d.value[name] = rng.choice(_WRONG_FOR_TEXT)
    return SCHEMA


def nan_inf(rng: random.Random, d: Draft) -> Expect:
    literal = rng.choice(("NaN", "Infinity", "-Infinity"))
    fields = MONEY[d.kind]
    roll = rng.random()
    if fields and roll < 0.4:
        d.value[rng.choice(fields)] = Raw(literal)  # not JSON at all
        return MALFORMED
    if fields and roll < 0.7:
        d.value[rng.choice(fields)] = rng.choice(("NaN", "Infinity", "-Infinity", "nan", "sNaN"))
        return SCHEMA  # a string, but no finite amount
    # In a field nobody reads: still not JSON (RFC 8259 has no NaN).
    d.value["x_" + rng.choice(("ratio", "score"))] = Raw(literal)
    return MALFORMED


_HUGE: Final = (
    (Raw("1e308"), SCHEMA),
    (Raw("1E+308"), SCHEMA),
    (Raw("-1e308"), SCHEMA),
    (Raw("1" + "0" * 39), SCHEMA),  # 40 digits
    ("9" * 40 + ".99", SCHEMA),
    (Raw("1e15"), SCHEMA),  # the bound itself (models.events.MAX_AMOUNT)
    (Raw("999999999999999.9999999999"), OK),  # just under it
    (Raw("1e-400"), OK),  # tiny is fine: it rounds to 0 in the ledger
    ("1e-400", OK),
    ("1e400", SCHEMA),
    # Valid JSON beyond what the parser takes (its limits, RFC 8259 section 9).
    (Raw("1" * 5000), MALFORMED),
    (Raw("1e99999999999999999999"), MALFORMED),
    (Raw("1e999999999999999999"), SCHEMA),  # parsed, then over the bound
    (Raw("0." + "1" * 5000), OK),  # 5000 digits of fraction: rounded in the ledger
)


def huge_number(rng: random.Random, d: Draft) -> Expect:
    fields = MONEY[d.kind]
    if not fields:
        d.value["x_count"] = Raw("1" * 41)  # an unread huge number is fine
        return OK
    number, expect = rng.choice(_HUGE)
    d.value[rng.choice(fields)] = number
    return expect


def deep_nesting(rng: random.Random, d: Draft) -> Expect:
    depth = rng.choice((1, 10, 100, 150, 300, 1000, 5000, 100_000))
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    nested = Raw(opener * depth + ("1" if opener != "[" else "") + closer * depth)
    # The parser's depth limit lies between 200 and 254 (RFC 8259 allows a limit).
    deep = MALFORMED if depth >= 254 else OK if depth <= 200 else only(ACCEPTED, "malformed_json")
    roll = rng.random()
    if roll < 0.6:
        d.value["x_tree"] = nested  # unread, but it must still parse
        return deep
    if roll < 0.8 and MONEY[d.kind]:
        d.value[rng.choice(MONEY[d.kind])] = nested
        return MALFORMED if depth >= 254 else SCHEMA
    d.raw = opener.encode() * depth + d.bytes() + closer.encode() * depth
    return MALFORMED if depth >= 254 else SCHEMA


def escaped_control(rng: random.Random, d: Draft) -> Expect:
    """Control characters escaped (\\u0000 …) inside ids: valid JSON and valid ids."""
    name = rng.choice(
        ("event_id", "customer_id", *[k for k in REQUIRED[d.kind] if k.endswith("id")])
    )
    chars = "".join(chr(rng.choice((0, 1, 7, 8, 9, 10, 13, 27, 31, 127))) for _ in range(3))
    d.value[name] = chars + str(d.value.get(name, ""))
    return OK


def exotic_unicode(rng: random.Random, d: Draft) -> Expect:
    """Ids in the rest of Unicode; length counts characters, not bytes."""
    name = rng.choice(("event_id", "customer_id"))
    tail = str(d.value.get(name, ""))[-8:]  # keeps ids unique
    roll = rng.random()
    if roll < 0.3:
        d.value[name] = "😀" * (128 - len(tail)) + tail  # 128 characters, 4 bytes each
        return OK
    if roll < 0.5:
        d.value[name] = "é" * (129 - len(tail)) + tail  # 129 characters
        return SCHEMA
    d.value[name] = rng.choice(("\u202eevil", "\ufeff", "e\u0301", "\U0010fffd", "\u2028")) + tail
    return OK


def _without_status(d: Draft) -> Expect:
    """An invoice whose status is gone is `overdue` by default: then it must be."""
    try:
        at = datetime.fromisoformat(str(d.value["occurred_at"]).replace("Z", "+00:00"))
        due = datetime.fromisoformat(str(d.value["due_date"])).date()
    except (KeyError, ValueError):
        return None
    return OK if (at.astimezone(UTC).date() - due).days >= 1 else only("not_overdue")


def missing_field(rng: random.Random, d: Draft) -> Expect:
    required = [k for k in (*COMMON, *REQUIRED[d.kind]) if k in d.value]
    optional = [k for k in OPTIONAL[d.kind] if k in d.value]
    if optional and (rng.random() < 0.3 or not required):
        name = rng.choice(optional)
        del d.value[name]
        return _without_status(d) if name == "status" else OK  # defaults apply
    if not required:
        return None
    del d.value[rng.choice(required)]
    return SCHEMA


def renamed_key(rng: random.Random, d: Draft) -> Expect:
    names = [k for k in d.value if k in (*COMMON, *REQUIRED[d.kind], *OPTIONAL[d.kind])]
    if not names:
        return None
    name = rng.choice(names)
    variants = (name.upper(), name + " ", " " + name, name.replace("_", "-"), name + "\u200b")
    new = rng.choice([n for n in variants if n != name])
    items = [(new if k == name else k, v) for k, v in d.value.items()]
    d.value = dict(items)
    if name == "status":
        return _without_status(d)
    return OK if name in OPTIONAL[d.kind] else SCHEMA


def extra_fields(rng: random.Random, d: Draft) -> Expect:
    for i in range(rng.randrange(1, 6)):
        d.value[f"x_{i}_{rng.randrange(1000)}"] = rng.choice(
            (None, True, Raw("-0.0"), "é€😀", [1, [2, [3]]], {"nested": {"k": "v"}}, Raw("1e-5"))
        )
    return OK


FUTURE: Final = "2099-01-05T10:00:00Z"


def rule(rng: random.Random, d: Draft) -> Expect:
    """A well-formed record that breaks a rule of the contract (codes and their order)."""
    v, kind = d.value, d.kind
    cases: list[tuple[dict[str, Any], Expect]] = [
        ({"occurred_at": FUTURE}, only("future_timestamp")),
        ({"occurred_at": "2026-01-05T10:00:00"}, SCHEMA),  # naive
        ({"occurred_at": Raw("1767607200")}, SCHEMA),  # a Unix number
        ({"occurred_at": "2026-02-30T10:00:00Z"}, SCHEMA),
        # In UTC these two lie outside datetime's range.
        ({"occurred_at": "0001-01-01T00:30:00+01:00"}, SCHEMA),
        ({"occurred_at": "9999-12-31T23:59:59-01:00"}, SCHEMA),
        # Long ago, but a time (an overdue invoice then was not overdue yet).
        (
            {"occurred_at": "0001-01-01T00:00:00Z"},
            only("not_overdue")
            if kind == "invoice" and v.get("status", "overdue") == "overdue"
            else OK,
        ),
        ({"event_id": ""}, SCHEMA),
        ({"customer_id": "c" * 129}, SCHEMA),
        ({"event_id": str(v.get("event_id")).rjust(128, "x")}, OK),
    ]
    present = [m for m in MONEY[kind] if m in v]
    if present:
        name = rng.choice(present)
        cases += [
            ({name: Raw("-0.01")}, SCHEMA),
            ({name: "-0"}, SCHEMA if name == "amount_due" else OK),
            ({name: Raw("0")}, SCHEMA if name == "amount_due" else OK),
        ]
    if "currency" in REQUIRED[kind]:
        cases += [
            ({"currency": rng.choice(("XYZ", "JPY", "SEK"))}, only("unknown_currency")),
            ({"currency": rng.choice(("eur", "EURO", "E1R", "", "€"))}, SCHEMA),
            # The first failing check decides: a future timestamp before the currency.
            ({"currency": "XYZ", "occurred_at": FUTURE}, only("future_timestamp")),
        ]
    if kind == "referral":
        me = v.get("customer_id")
        cases += [
            ({"referred_customer_id": me}, only("self_referral")),
            ({"referred_customer_id": me, "occurred_at": FUTURE}, only("future_timestamp")),
        ]
    if kind == "invoice":
        try:
            at = datetime.fromisoformat(str(v.get("occurred_at")).replace("Z", "+00:00"))
            day = at.astimezone(UTC).date()
        except (ValueError, OverflowError):  # another mutation got there first
            day = START.date()
        soon = (day + timedelta(days=rng.randrange(0, 30))).isoformat()
        cases += [
            ({"status": "overdue", "due_date": soon}, only("not_overdue")),
            # The currency is checked before whether the invoice is overdue.
            ({"status": "overdue", "due_date": soon, "currency": "XYZ"}, only("unknown_currency")),
            ({"due_date": "2026-02-30"}, SCHEMA),
            ({"due_date": "2026-01-05T00:00:00Z"}, SCHEMA),
            ({"status": "disputed"}, SCHEMA),
        ]
    if kind == "ticket":
        cases += [({"channel": "fax"}, SCHEMA), ({"category": "praise"}, SCHEMA)]
    if kind == "order":
        cases.append(({"kind": "exchanged"}, SCHEMA))
    changes, expect = rng.choice(cases)
    v.update(changes)
    return expect


def not_object(rng: random.Random, d: Draft) -> Expect:
    text, expect = rng.choice(
        (
            (b"[]", SCHEMA),
            (b"[1,2,3]", SCHEMA),
            (b'"' + d.bytes().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"', SCHEMA),
            (b"42", SCHEMA),
            (b"null", SCHEMA),
            (b"true", SCHEMA),
            (b"{}", SCHEMA),
            (b"", MALFORMED),
            (b" \n\t", MALFORMED),
            (b"[" + d.bytes() + b"]", SCHEMA),
        )
    )
    d.raw = text
    return expect


def truncate(rng: random.Random, d: Draft) -> Expect:
    raw = d.bytes()
    d.raw = raw[: rng.randrange(len(raw))] if raw else raw
    return MALFORMED  # no proper prefix of an object is JSON


def _string_start(raw: bytes, rng: random.Random) -> int | None:
    """An offset just inside a string value (after `":"`), if there is one."""
    spots = [i + 3 for i in range(len(raw) - 3) if raw[i : i + 3] == b'":"']
    return rng.choice(spots) if spots else None


def invalid_utf8(rng: random.Random, d: Draft) -> Expect:
    raw = d.bytes()
    bad = rng.choice(_INVALID_UTF8)
    if rng.random() < 0.15:
        # An escaped lone surrogate: JSON's grammar allows it, but it is no character
        # (RFC 8259 section 8.2); the parser refuses it, as it refuses its UTF-8 form.
        bad = rng.choice((b"\\ud800", b"\\udfff", b"\\ud83d"))
        at = _string_start(raw, rng)
        if at is None:
            return None
        d.raw = raw[:at] + bad + raw[at:]
        return MALFORMED
    at = _string_start(raw, rng) if rng.random() < 0.7 else None
    if at is None:
        at = rng.randrange(len(raw) + 1)
    d.raw = raw[:at] + bad + raw[at:]
    return MALFORMED  # inside a string: not UTF-8; outside: not JSON either


def raw_control(rng: random.Random, d: Draft) -> Expect:
    raw = d.bytes()
    if rng.random() < 0.3 and raw.startswith(b"{"):
        # JSON's own whitespace between tokens is fine; other controls are not.
        ws = rng.choice((b"\t", b"\n", b"\r", b" ", b"\x0b", b"\x0c", b"\x00"))
        d.raw = b"{" + ws + raw[1:]
        return OK if ws in (b"\t", b"\n", b"\r", b" ") else MALFORMED
    at = _string_start(raw, rng)
    if at is None:
        return None
    d.raw = raw[:at] + bytes([rng.choice((0, 1, 9, 10, 13, 27, 31))]) + raw[at:]
    return MALFORMED  # a control character inside a string must be escaped


def duplicate_keys(rng: random.Random, d: Draft) -> Expect:
    """The same name twice: the parser keeps the last (RFC 8259 leaves it open)."""
    raw = d.bytes()
    if not (raw.startswith(b"{") and raw.endswith(b"}")):
        return None
    name = rng.choice(list(d.value))
    roll = rng.random()
    if roll < 0.4:  # an earlier duplicate, overridden by the real field
        junk = to_json(rng.choice((None, [], {"a": 1}, "x", Raw("1e999"))))
        d.raw = b"{" + to_json(name).encode() + b":" + junk.encode() + b"," + raw[1:]
        return OK
    if (roll < 0.7 and name in (*COMMON, *REQUIRED[d.kind])) or d.kind == "referral":
        # A later one of a wrong type. (Not another referrer: a self-referral would
        # become a referral of an ordering customer, whose credits depend on timing.)
        d.raw = raw[:-1] + b"," + to_json(name).encode() + b":null}"
        return SCHEMA
    # Later, another customer: the last one wins, and the key no longer matches it.
    d.raw = raw[:-1] + b',"customer_id":' + to_json(f"c-{rng.randrange(CUSTOMERS)}").encode() + b"}"
    return OK


def _pad(d: Draft, target: int, rng: random.Random) -> bool:
    """Insert `"padding":"…"` so that the value is exactly `target` bytes."""
    raw = d.bytes()
    if not raw.startswith(b"{"):
        return False
    frame = len(b'"padding":"",')
    need = target - len(raw) - frame
    if need < 0:
        return False
    unit = rng.choice(("x", "é", "€", "😀", "\\u00e9"))  # 1, 2, 3, 4 and 6 bytes a character
    width = len(unit.encode())
    fill = unit * (need // width) + "x" * (need % width)
    d.raw = b'{"padding":"' + fill.encode() + b'",' + raw[1:]
    assert len(d.raw) == target
    return True


def size_limit(rng: random.Random, d: Draft) -> Expect:
    """Just under, at and just over `max_payload_bytes`, in bytes, not characters."""
    limit = d.limit
    target = rng.choice((limit - 1, limit, limit + 1, limit + rng.randrange(2, 5000), 2 * limit))
    if rng.random() < 0.1:  # too large and not even JSON: size is checked first
        d.raw = (rng.randbytes(64) * (limit // 64 + 2))[: max(target, limit + 1)]
        return only("payload_too_large")
    if not _pad(d, target, rng):
        return None
    return OK if target <= limit else only("payload_too_large")


def giant(rng: random.Random, d: Draft) -> Expect:
    """Far over the limit, up to what the broker takes (1 MiB): values whose dead
    letter would not fit a producer request if kept whole (models.deadletter)."""
    n = rng.randrange(100_000, 900_000)
    unit = rng.choice((b"\x01", b'"', b"\\", b"\xff", b"\xe2\x82\xac", b"x"))
    d.raw = (unit * (n // len(unit) + 1))[:n]
    return only("payload_too_large")


def huge_array(rng: random.Random, d: Draft) -> Expect:
    raw = d.bytes()
    if not raw.startswith(b"{"):
        return None
    n = rng.choice((1000, 10_000, 32_000, 40_000, 100_000))
    item = rng.choice((b"0", b"{}", b"[]", b'"x"', b"1e308", b"null"))
    arr = b"[" + b",".join([item] * n) + b"]"
    present = [m for m in MONEY[d.kind] if m in d.value]
    if rng.random() < 0.2 and present:
        # An earlier field of the same name: the real amount after it wins.
        d.raw = b'{"' + rng.choice(present).encode() + b'":' + arr + b"," + raw[1:]
    else:
        d.raw = b'{"x_list":' + arr + b"," + raw[1:]
    return OK if len(d.raw) <= d.limit else only("payload_too_large")


def byte_noise(rng: random.Random, d: Draft) -> Expect:
    raw = bytearray(d.bytes())
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        at = rng.randrange(len(raw) + 1)
        if op < 0.4 and raw:
            raw[min(at, len(raw) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            raw[at:at] = bytes([rng.randrange(256)])
        elif raw:
            del raw[min(at, len(raw) - 1)]
    d.raw = bytes(raw)
    return None  # anything may come of it, as long as nothing crashes


def framing(rng: random.Random, d: Draft) -> Expect:
    raw = d.bytes()
    roll = rng.random()
    if roll < 0.4:
        try:  # numbers kept as written: Raw, not float
            parsed = json.loads(raw, parse_float=Raw, parse_int=Raw, parse_constant=Raw)
        except (ValueError, RecursionError):  # another mutation broke it: whitespace only
            parsed = None
        if parsed is not None:
            try:  # to_json recurses deeper per level than json.loads: deep nesting
                text = to_json(parsed, pretty=True)
            except RecursionError:
                text = None
            if text is not None:
                # surrogatepass: another mutation may have left an escaped lone surrogate
                d.raw = text.encode("utf-8", "surrogatepass")
                return OK
    if roll < 0.6:
        d.raw = b" \n" + raw + b"\r\n"
        return OK
    if roll < 0.8:
        d.raw = b"\xef\xbb\xbf" + raw  # a byte order mark: JSON text must not carry one
        return MALFORMED
    d.raw = raw + rng.choice((b"x", b"{}", b",", b"\x00"))  # trailing characters
    return MALFORMED


DICT_MUTATORS: Final[dict[str, Mutator]] = {
    "wrong_type": wrong_type,
    "nan_inf": nan_inf,
    "huge_number": huge_number,
    "deep_nesting": deep_nesting,
    "escaped_control": escaped_control,
    "exotic_unicode": exotic_unicode,
    "missing_field": missing_field,
    "renamed_key": renamed_key,
    "extra_fields": extra_fields,
    "rule": rule,
}
BYTE_MUTATORS: Final[dict[str, Mutator]] = {
    "not_object": not_object,
    "truncate": truncate,
    "invalid_utf8": invalid_utf8,
    "raw_control": raw_control,
    "duplicate_keys": duplicate_keys,
    "size_limit": size_limit,
    "huge_array": huge_array,
    "giant": giant,
    "byte_noise": byte_noise,
    "framing": framing,
}
MUTATORS: Final[dict[str, Mutator]] = DICT_MUTATORS | BYTE_MUTATORS
MUTATOR_NAMES: Final = list(MUTATORS)
# Rules thrice as often (five codes live only there), giants a tenth (they are big).
MUTATOR_WEIGHTS: Final = [
    3.0 if name == "rule" else 0.1 if name == "giant" else 1.0 for name in MUTATOR_NAMES
]


# ---- keys, headers, topics -----------------------------------------------------------


def on_another_topic(expect: Expect) -> Expect:
    """On a topic that is not its kind's, a value that got past size and JSON is a
    schema violation (the other kind's id is missing, or the topic is unknown)."""
    if expect is None:
        return None
    early = ("payload_too_large", "malformed_json")
    return frozenset(c if c in early else "schema_violation" for c in expect)


KEY_MODES: Final = ("none", "other", "ascii", "binary", "empty", "long", "wrong_partition")
HEADER_MODES: Final = ("random", "spoofed_dlq", "binary", "many", "repeated")


def hostile_headers(rng: random.Random, mode: str) -> Headers:
    if mode == "random":
        return [(f"h{i}", rng.randbytes(rng.randrange(20))) for i in range(rng.randrange(1, 4))]
    if mode == "spoofed_dlq":  # the dead-letter headers, forged: the worker writes its own
        return [(HEADER_CODE, b"forged"), (HEADER_OFFSET, b"-42"), (HEADER_TOPIC, b"\xff")]
    if mode == "binary":
        return [("\u00e9t\u00e9", b"\xff\xfe\x00"), ("", b"")]
    if mode == "many":
        return [(f"x-{i}", b"v" * 10) for i in range(200)]
    return [("trace", b"1"), ("trace", b"2"), ("trace", b"3")]


# ---- the stream ----------------------------------------------------------------------


@dataclass
class Stream:
    """A seeded stream of hostile records, mixed with valid ones."""

    topics: Topics
    partitions: int
    limit: int  # max_payload_bytes
    seed: int
    valid_share: float = 0.25
    # Records to topics the worker does not read: only for in-process runs.
    foreign_topics: bool = True
    rng: random.Random = field(init=False)
    made: Valid = field(init=False)
    kinds: dict[str, str] = field(init=False)
    sent_valid: list[Fuzzed] = field(init=False, default_factory=list)
    pending: list[Fuzzed] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.made = Valid(self.rng)
        self.kinds = self.topics.input_kinds()
        self.topic_of = {kind: topic for topic, kind in self.kinds.items()}

    def records(self, count: int) -> Iterator[Fuzzed]:
        for n in range(count):
            yield self.one(n)

    def one(self, n: int) -> Fuzzed:
        if self.pending:  # the second half of a stale pair
            return self._renumber(self.pending.pop(), n)
        roll = self.rng.random()
        if roll < self.valid_share:
            return self.valid(n)
        if roll < self.valid_share + 0.04 and self.sent_valid:
            again = self.rng.choice(self.sent_valid)  # an exact resend
            return self._renumber(again, n, mutations=("resend",), intent="duplicate")
        if roll < self.valid_share + 0.07:
            return self._stale_pair(n)
        names: list[str] = []
        for _ in range(self.rng.choice((1, 1, 1, 1, 2, 2, 3))):
            name = self.rng.choices(MUTATOR_NAMES, MUTATOR_WEIGHTS)[0]
            if name not in names:
                names.append(name)
        return self.mutated(n, self.rng.choice(list(self.kinds.values())), names)

    def _renumber(self, rec: Fuzzed, n: int, **changes: Any) -> Fuzzed:
        return dataclasses.replace(rec, n=n, **changes)

    def _keyed(self, n: int, kind: str, value: dict[str, Any], intent: str) -> Fuzzed:
        """An unmutated record, keyed by its customer on that customer's partition."""
        key = str(value["customer_id"]).encode()
        raw = to_json(value, self.rng).encode()
        partition = partition_for(key, self.partitions)
        return Fuzzed(n, self.topic_of[kind], partition, key, raw, [], (), OK, intent)

    def valid(self, n: int) -> Fuzzed:
        kind = self.rng.choice(list(self.kinds.values()))
        rec = self._keyed(n, kind, self.made.value(kind), "applied")
        self.sent_valid.append(rec)
        return rec

    def _stale_pair(self, n: int) -> Fuzzed:
        """A ticket's later update, then (next) an earlier one: stale on arrival."""
        later = self.made.value("ticket")
        t = datetime.fromisoformat(str(later["occurred_at"]).replace("Z", "+00:00"))
        earlier = dict(later) | {
            "event_id": self.made.next_id("ev"),
            "occurred_at": self.made.stamp(t - timedelta(hours=self.rng.randrange(1, 48))),
            "handling_minutes": self.made.money(0, 30),
        }
        self.pending.append(self._keyed(n + 1, "ticket", earlier, "stale"))
        return self._keyed(n, "ticket", later, "applied")

    def mutated(self, n: int, kind: str, names: list[str]) -> Fuzzed:
        """A fresh valid record of `kind` with the named mutations, then a key and
        headers that are sometimes hostile too."""
        rng = self.rng
        d = Draft(kind, self.made.value(kind), self.limit, rng=rng)
        # Rules last of the value mutators: a self-referral must stay one (no later
        # mutator changes its customer, see `duplicate_keys`).
        ordered = sorted((m for m in names if m in DICT_MUTATORS), key=lambda m: m == "rule")
        ordered += [m for m in names if m in BYTE_MUTATORS]
        expects = [MUTATORS[m](rng, d) for m in ordered]
        expect: Expect = expects[0] if len(expects) == 1 else None
        if len(d.bytes()) > self.limit:
            expect = only("payload_too_large")  # size is checked first, whatever else is wrong
        cid = d.value.get("customer_id")
        key = cid.encode() if isinstance(cid, str) else None
        topic = self.topic_of[kind]
        partition = partition_for(key, self.partitions) if key else 0
        done = list(ordered)
        roll = rng.random()
        if roll < 0.05:
            # Another input topic: every kind has a required id the others lack.
            topic = rng.choice([t for t in self.kinds if t != topic])
            done.append("wrong_topic")
            expect = on_another_topic(expect)
        elif roll < 0.07 and self.foreign_topics:
            topic = rng.choice(("no-such-topic", "", "orders-v2"))
            done.append("foreign_topic")
            expect = on_another_topic(expect)
        if rng.random() < 0.3:
            mode = rng.choice(KEY_MODES)
            key, partition = self._hostile_key(mode, key)
            done.append(f"key:{mode}")
        headers: Headers = []
        if rng.random() < 0.25:
            mode = rng.choice(HEADER_MODES)
            headers = hostile_headers(rng, mode)
            done.append(f"headers:{mode}")
        value: bytes | None = d.bytes()
        if rng.random() < 0.003:
            value, expect = None, MALFORMED  # a tombstone
            done.append("tombstone")
            if key is None:  # a tombstone has a key (clients refuse one without)
                key = b"tombstone"
                partition = partition_for(key, self.partitions)
        return Fuzzed(n, topic, partition, key, value, headers, tuple(done), expect)

    def _hostile_key(self, mode: str, key: bytes | None) -> tuple[bytes | None, int]:
        rng, parts = self.rng, self.partitions
        if mode == "none":
            return None, rng.randrange(parts)
        if mode == "other":
            k = f"c-{rng.randrange(CUSTOMERS)}".encode()
        elif mode == "ascii":
            k = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 30)))
        elif mode == "binary":
            k = rng.randbytes(rng.randrange(1, 30)) + b"\xff"
        elif mode == "empty":
            k = b""
        elif mode == "long":
            k = b"k" * 5000
        else:  # the right key on another partition (a producer's own partitioner)
            right = partition_for(key, parts) if key else 0
            return key, (right + 1 + rng.randrange(parts - 1)) % parts if parts > 1 else 0
        return k, partition_for(k, parts)


# ---- the in-process check ------------------------------------------------------------


def original_bytes(letter: dict[str, Any]) -> bytes:
    """What a DLQ record says the rejected value was, as bytes."""
    if letter.get("original_encoding") == "base64":
        return base64.b64decode(letter["original"], validate=True)
    text: str = letter["original"]
    return text.encode("utf-8")


def original_problem(letter: dict[str, Any], value: bytes) -> str | None:
    """Why a dead letter's `original` does not give back `value`, or None. It is the
    value as text, or base64 when not UTF-8 or when the text as JSON would exceed
    MAX_ORIGINAL_BYTES; when even base64 would, its first bytes and its size."""
    got = original_bytes(letter)
    try:
        as_text = len(json.dumps(value.decode("utf-8"), ensure_ascii=False).encode())
    except UnicodeDecodeError:
        as_text = None
    as_base64 = len(base64.b64encode(value)) + 2
    base64_due = as_text is None or as_text > MAX_ORIGINAL_BYTES
    if (letter.get("original_encoding") == "base64") != base64_due:
        return f"encoding {letter.get('original_encoding')} for {as_text} bytes as JSON text"
    if as_base64 <= MAX_ORIGINAL_BYTES or not base64_due:
        if "original_size" in letter:
            return "an original that fits was cut"
        return None if got == value else "the dead letter's original is not the value as sent"
    if letter.get("original_size") != len(value) or not (0 < len(got) < len(value)):
        return f"cut original: size {letter.get('original_size')}, {len(got)} of {len(value)} kept"
    kept = len(letter["original"]) + 2
    if not MAX_ORIGINAL_BYTES - 4096 < kept <= MAX_ORIGINAL_BYTES:
        return f"a cut original of {kept} bytes as JSON: it keeps what fits"
    return None if value.startswith(got) else "the cut original is not the value's first bytes"


class FuzzFailure(AssertionError):
    pass


@dataclass
class Tally:
    """What a run saw; the tests assert coverage on it."""

    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    expectations: Counter[str] = field(default_factory=Counter)  # checked, by mutation
    intents: Counter[str] = field(default_factory=Counter)
    rekeyed: int = 0
    base64_originals: int = 0
    cut_originals: int = 0  # too long to keep whole in a dead letter
    alerts: int = 0
    alerts_resent: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # links and credits


class InProcess:
    """Each record through the service's `Processor` (a dict for the table, a list for
    the topics, internal records pumped back at once) and through replay's `Replayer`,
    the same bytes and the same clock; every difference, crash or broken promise fails
    with the record that caused it."""

    def __init__(
        self, settings: Settings, *, clock_us: int = NOW_US, seed: int | None = None
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.table: dict[bytes, bytes] = {}
        self.sent: list[tuple[str, bytes | None, bytes, Headers | None, int | None]] = []
        self.p = Processor(settings, self.table, self._send, clock=lambda: clock_us)
        self.r = Replayer(settings, clock_us=clock_us)
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.internal_offset = 0
        self.tally = Tally()
        self.seed = seed
        self.alerts: dict[str, dict[str, Any]] = {}  # by alert_id
        # With `keep_letters`, every dead letter by its source (topic, partition,
        # offset): (key, value, headers), to compare a worker's with.
        self.keep_letters = False
        self.letters: dict[tuple[str, int, int], tuple[bytes | None, dict[str, Any], Headers]] = {}

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        partition: int | None,
    ) -> None:
        self.sent.append((topic, key, value, headers, partition))

    def fail(self, rec: Fuzzed, why: str) -> FuzzFailure:
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        return FuzzFailure(f"{why}{seed}\n  record {rec.describe()}")

    def feed(self, rec: Fuzzed, offset: int | None = None) -> str:
        """One record; returns how it ended (applied, duplicate, stale or rejected)."""
        t = self.tally
        if offset is None:
            offset = self.offsets[(rec.topic, rec.partition)]
            self.offsets[(rec.topic, rec.partition)] += 1
        start = len(self.sent)
        before = self.p.outcomes.copy()
        try:
            self.p.on_input(rec.topic, rec.partition, offset, rec.key, rec.value)
            mine = self.sent[start:]
            del self.sent[start:]
            internal = [s for s in mine if s[0] == self.topics.internal]
            direct = self.p.outcomes - before
            final = self._pump(rec, internal, direct, mine)
        except FuzzFailure:
            raise
        except Exception:
            raise self.fail(rec, f"the processor crashed:\n{traceback.format_exc()}") from None
        r_before = self.r.outcomes.copy()
        try:
            replayed = self.r.feed(
                rec.topic,
                rec.value if rec.value is not None else b"",
                partition=rec.partition,
                offset=offset,
            )
        except Exception:
            raise self.fail(rec, f"replay crashed:\n{traceback.format_exc()}") from None
        r_outcome = list((self.r.outcomes - r_before).elements())
        if r_outcome != [final]:
            raise self.fail(rec, f"the processor says {final}, replay {r_outcome}")
        if rec.intent is not None and final != rec.intent:
            raise self.fail(rec, f"meant to be {rec.intent}, was {final}")
        self._check_outputs(rec, offset, final, mine, replayed)
        t.records += 1
        t.outcomes[final] += 1
        t.mutations.update(rec.mutations or ("none",))
        if rec.intent is not None:
            t.intents[rec.intent] += 1
        return final

    def _pump(
        self,
        rec: Fuzzed,
        internal: list[tuple[str, bytes | None, bytes, Headers | None, int | None]],
        direct: Counter[tuple[str, str]],
        mine: list[tuple[str, bytes | None, bytes, Headers | None, int | None]],
    ) -> str:
        """Deliver the internal records this one caused; its final outcome."""
        ends = [o for (_, o), c in direct.items() for _ in range(c) if o != "rekeyed"]
        rekeyed = direct.get((rec.topic, "rekeyed"), 0)
        if rekeyed + len(ends) != 1:
            raise self.fail(rec, f"counted {dict(direct)}: not exactly one outcome")
        pending = list(internal)
        while pending:
            _, key, value, _, partition = pending.pop(0)
            envelope = json.loads(value)
            part = (
                partition
                if partition is not None
                else partition_for(key or b"", self.settings.partitions)
            )
            self.internal_offset += 1
            start = len(self.sent)
            before = self.p.outcomes.copy()
            self.p.on_internal(part, self.internal_offset, key, value)
            more = self.sent[start:]
            del self.sent[start:]
            mine.extend(more)
            pending.extend(s for s in more if s[0] == self.topics.internal)
            got = self.p.outcomes - before
            if envelope["k"] == "event":
                if envelope["value"].encode("utf-8") != rec.value:
                    raise self.fail(rec, "the re-keyed envelope does not carry the value as sent")
                self.tally.rekeyed += 1
                ends += [o for (_, o), c in got.items() for _ in range(c)]
            elif envelope["k"] in ("link", "credit"):
                if sum(got.values()) != 1:
                    raise self.fail(rec, f"a {envelope['k']} counted {dict(got)}")
                self.tally.forwarded[envelope["k"]] += 1
            else:
                raise self.fail(rec, f"unexpected internal record {envelope}")
        if len(ends) != 1 or ends[0] not in OUTCOMES:
            raise self.fail(rec, f"ended as {ends}, not exactly one of {OUTCOMES}")
        return ends[0]

    def _check_outputs(
        self,
        rec: Fuzzed,
        offset: int,
        final: str,
        mine: list[tuple[str, bytes | None, bytes, Headers | None, int | None]],
        replayed: list[OutputRecord],
    ) -> None:
        t, topics = self.tally, self.topics
        for topic, _, value, _, _ in mine:
            try:
                json.loads(value.decode("utf-8"))
            except ValueError:
                raise self.fail(rec, f"sent a value to {topic} that is not UTF-8 JSON") from None
        letters = [s for s in mine if s[0] == topics.dlq]
        r_letters = [o for o in replayed if o.topic == topics.dlq]
        judged = ACCEPTED
        if final == "rejected":
            if len(letters) != 1 or len(r_letters) != 1:
                raise self.fail(
                    rec, f"rejected with {len(letters)} / {len(r_letters)} dead letters"
                )
            if len(mine) != 1:
                raise self.fail(rec, f"a rejected record also sent {[s[0] for s in mine]}")
            _, key, value, headers, _ = letters[0]
            letter = json.loads(value)
            want = r_letters[0]
            if letter != want.value:
                raise self.fail(rec, f"dead letter {letter} differs from replay's {want.value}")
            code = letter["error"]["code"]
            if code not in REJECTION_CODES:
                raise self.fail(rec, f"unknown code {code}")
            problem = original_problem(letter, rec.value or b"")
            if problem:
                raise self.fail(rec, problem)
            t.base64_originals += letter.get("original_encoding") == "base64"
            t.cut_originals += "original_size" in letter
            err = letter["error"]
            if (err["topic"], err["partition"], err["offset"]) != (
                rec.topic,
                rec.partition,
                offset,
            ):
                raise self.fail(rec, f"dead letter points at {err}")
            want_key = want.key.encode("utf-8") if want.key else rec.key
            if key != want_key:
                raise self.fail(rec, f"dead letter key {key!r}, want {want_key!r}")
            if headers != [
                (HEADER_CODE, code.encode()),
                (HEADER_MESSAGE, err["message"].encode()),
                (HEADER_TOPIC, rec.topic.encode()),
                (HEADER_PARTITION, str(rec.partition).encode()),
                (HEADER_OFFSET, str(offset).encode()),
                # CloudEvents binary mode (contract section 2.10), ce_id per source record
                *dead_letter_headers(
                    self.p.ce_source,
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=offset,
                    original=rec.value or b"",
                    rejected_at=letter["received_at"],
                    customer_id=want.key,
                ),
            ]:
                raise self.fail(rec, f"dead letter headers {headers}")
            t.codes[code] += 1
            judged = code
            if self.keep_letters:
                self.letters[(rec.topic, rec.partition, offset)] = (key, letter, headers or [])
        elif letters or r_letters:
            raise self.fail(rec, f"{final}, yet dead-lettered")
        if rec.expect is not None:
            if judged not in rec.expect:
                raise self.fail(rec, f"decoded as {judged}, want one of {sorted(rec.expect)}")
            for m in rec.mutations:
                t.expectations[m] += 1
        alerts = [json.loads(s[2]) for s in mine if s[0] == topics.alerts]
        # A redelivered trigger re-sends its alert, same alert_id (contract section 5);
        # replay has no redeliveries, so it never does.
        resent = [a for a in alerts if a["alert_id"] in self.alerts]
        if resent and final != "duplicate":
            raise self.fail(rec, f"{final}, yet alerts were sent again")
        for a in resent:
            if a != self.alerts[a["alert_id"]]:
                raise self.fail(rec, f"alert {a['alert_id']} sent again, but different")
        new = [a for a in alerts if a["alert_id"] not in self.alerts]
        if new != [o.value for o in replayed if o.topic == topics.alerts]:
            raise self.fail(rec, "the processor's alerts differ from replay's")
        for a in new:
            self.alerts[a["alert_id"]] = a
        t.alerts += len(new)
        t.alerts_resent += len(resent)

    def finish(self) -> int:
        """Every customer's final snapshot equals replay's; how many were compared."""
        want = {
            cid: self.r.model.snapshot_wire(s)
            for cid, s in self.r.states.items()
            if s.has_own_events
        }
        got = {}
        for key, raw in self.table.items():
            state = codec.loads(raw)
            if state.has_own_events:
                got[key.decode("utf-8")] = self.p.model.snapshot_wire(state)
        if got != want:
            diff = sorted(c for c in set(got) | set(want) if got.get(c) != want.get(c))
            raise FuzzFailure(
                f"final snapshots differ from replay's for {diff[:5]} (seed {self.seed})"
            )
        return len(want)


def run(settings: Settings, count: int, seed: int) -> tuple[Tally, int]:
    """`count` hostile records through `InProcess`: its tally and customers compared."""
    stream = Stream(settings.topics, settings.partitions, settings.max_payload_bytes, seed)
    check = InProcess(settings, seed=seed)
    for rec in stream.records(count):
        check.feed(rec)
    return check.tally, check.finish()


def coverage_gaps(t: Tally) -> list[str]:
    """What a run of enough records must have seen, and did not."""
    gaps = [f"code {c}" for c in REJECTION_CODES if not t.codes[c]]
    gaps += [f"outcome {o}" for o in OUTCOMES if not t.outcomes[o]]
    gaps += [f"mutation {m}" for m in MUTATORS if not t.mutations[m]]
    gaps += [
        f"checked mutation {m}" for m in MUTATORS if m != "byte_noise" and not t.expectations[m]
    ]
    gaps += [f"intent {i}" for i in ("applied", "duplicate", "stale") if not t.intents[i]]
    if not t.rekeyed:
        gaps.append("a re-keyed record")
    if not t.base64_originals:
        gaps.append("a base64 original")
    if not t.cut_originals:
        gaps.append("a cut original")
    return gaps
