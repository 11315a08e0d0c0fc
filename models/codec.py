"""CustomerState <-> bytes: the table value and changelog record of a customer.

Compact, versioned JSON. Decimals travel as strings (exact, trailing zeros dropped);
instants as epoch seconds (an int) or, when they carry microseconds, as a string of
epoch microseconds; days as days since the epoch. Buckets and remembered ids are
sparse and delta-coded, so a customer costs bytes in proportion to its recent
activity, not its age.

Layout of version 1 (short keys, because every applied event writes this value):

    v   format version (1)          c   customer id        s   status index
    a   as_of        b  below_since  f  first_seen         l   last_event_at
    n   events_applied               k  alerts emitted     d   day of the running sums
    L   lifetime components [8]      T  trailing components [8]   P  previous-window revenue
    B   buckets, flat: [day, "amounts", day − previous day, "amounts", …]; "amounts" is
        the 8 components joined by ";", zeros empty, trailing empties dropped
    S   remembered ids in expiry order, flat: [mark delta, ids, mark delta, ids, …]
        (mark = day applied << 1 | forwarded-bit). `ids` is one string of front-coded
        ids joined by ",": each is one character chr(48 + n) saying how many leading
        characters it shares with the id before it, then the rest. Upstream ids are
        mostly sequential, so this often halves them. A state with an id holding a
        "," stores every group as a plain list instead.
    K   tickets: {ticket_id: [cost, at]}
    I   invoices: {invoice_id: 1} when paid (final), else [status, amount_due,
        provision, carrying, at] with status 0 overdue / 2 written_off
    R   referred customer ids        rb referred_by        ra  referral_at
    A   the latest alerts, oldest first, as what built them: [n, kind, previous status,
        status, as_of, trigger id or null, trailing "amounts", lifetime "amounts",
        previous-window revenue] (statuses and kind as indexes); optional, so states
        written before it existed still load
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jiter

from models.errors import StateFormatError
from models.ledger import N_COMPONENTS, PAID, CustomerState, Invoice, KeptAlert, Ticket

VERSION = 1
_STATUS = ("new", "profitable", "at_risk", "unprofitable")
_INVOICE_STATUS = ("overdue", "paid", "written_off")
_KINDS = ("became_unprofitable", "at_risk", "recovered")
_ZERO = Decimal(0)
_US = 1_000_000


def _d(x: Decimal) -> str | int:
    # Ledger amounts are kept normalised (models.money.exact), so str() is short.
    return 0 if not x else str(x)


def _t(us: int) -> int | str:
    return us // _US if us % _US == 0 else str(us)


def _ut(x: int | str) -> int:
    return x * _US if isinstance(x, int) else int(x)


def _amounts(b: list[Decimal]) -> str:
    parts = ["" if not x else str(x) for x in b]
    while parts and not parts[-1]:
        parts.pop()
    return ";".join(parts)


def _bucket(text: str) -> list[Decimal]:
    b = [_ZERO] * N_COMPONENTS
    for i, part in enumerate(text.split(";")):
        if part:
            b[i] = Decimal(part)
    return b


_PREFIX_BASE = 48  # chr(48) = "0": no shared prefix
_MAX_SHARED = 128  # ids are at most 128 characters


def _shared(a: str, b: str) -> int:
    """Length of the common prefix (binary search on slices: C-speed compares)."""
    n = min(len(a), len(b), _MAX_SHARED)
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _encode_ids(seen: dict[str, int]) -> list[int | str | list[str]]:
    flat: list[int | str | list[str]] = []
    # Front coding needs "," free ids; a state holding one keeps plain lists.
    if ",".join(seen).count(",") != len(seen) - 1:
        mark = 0
        for event_id, m in seen.items():
            if not flat or m != mark:
                flat += (m - mark, [])
                mark = m
            flat[-1].append(event_id)  # type: ignore[union-attr]
        return flat
    mark, prev = 0, ""
    parts: list[str] = []
    for event_id, m in seen.items():
        if m != mark or not flat:
            if parts:
                flat.append(",".join(parts))
                parts = []
            flat.append(m - mark)
            mark = m
        n = _shared(prev, event_id)
        parts.append(chr(_PREFIX_BASE + n) + event_id[n:])
        prev = event_id
    flat.append(",".join(parts))
    return flat


def _decode_ids(flat: Any, seen: dict[str, int]) -> None:
    mark, prev = 0, ""
    for j in range(0, len(flat), 2):
        mark += flat[j]
        ids = flat[j + 1]
        if isinstance(ids, list):
            for event_id in ids:
                seen[event_id] = mark
            continue
        for part in ids.split(","):
            event_id = prev[: ord(part[0]) - _PREFIX_BASE] + part[1:]
            seen[event_id] = mark
            prev = event_id


def to_dict(s: CustomerState) -> dict[str, Any]:
    out: dict[str, Any] = {"v": VERSION, "c": s.customer_id, "s": _STATUS.index(s.status)}
    for key, value in (
        ("a", s.as_of),
        ("b", s.below_since),
        ("f", s.first_seen),
        ("l", s.last_event_at),
    ):
        if value is not None:
            out[key] = _t(value)
    if s.day is not None:
        out["d"] = s.day
    out["n"] = s.events_applied
    out["k"] = s.alerts_emitted
    out["L"] = [_d(x) for x in s.lifetime]
    out["T"] = [_d(x) for x in s.trailing]
    out["P"] = _d(s.prev_revenue)
    if s.buckets:
        flat: list[int | str] = []
        last = 0
        for day in sorted(s.buckets):
            flat += (day - last, _amounts(s.buckets[day]))
            last = day
        out["B"] = flat
    if s.seen:
        out["S"] = _encode_ids(s.seen)
    if s.tickets:
        out["K"] = {tid: [_d(t.cost), _t(t.at)] for tid, t in s.tickets.items()}
    if s.invoices:
        out["I"] = {
            iid: 1
            if i.status == "paid"
            else [
                _INVOICE_STATUS.index(i.status),
                _d(i.amount_due),
                _d(i.provision),
                _d(i.carrying),
                _t(i.at),
            ]
            for iid, i in s.invoices.items()
        }
    if s.referred:
        out["R"] = sorted(s.referred)
    if s.referred_by is not None and s.referral_at is not None:
        out["rb"] = s.referred_by
        out["ra"] = _t(s.referral_at)
    if s.recent_alerts:
        out["A"] = [
            [
                k.n,
                _KINDS.index(k.kind),
                _STATUS.index(k.previous_status),
                _STATUS.index(k.status),
                _t(k.as_of),
                k.trigger,
                _amounts(list(k.trailing)),
                _amounts(list(k.lifetime)),
                _d(k.prev_revenue),
            ]
            for k in s.recent_alerts
        ]
    return out


def _opt_t(d: dict[str, Any], key: str) -> int | None:
    x = d.get(key)
    return None if x is None else _ut(x)


def from_dict(d: dict[str, Any]) -> CustomerState:
    if d.get("v") != VERSION:
        raise StateFormatError(f"unknown customer state version {d.get('v')!r}")
    try:
        s = CustomerState(
            customer_id=d["c"],
            status=_STATUS[d["s"]],
            as_of=_opt_t(d, "a"),
            below_since=_opt_t(d, "b"),
            first_seen=_opt_t(d, "f"),
            last_event_at=_opt_t(d, "l"),
            events_applied=d["n"],
            alerts_emitted=d["k"],
            day=d.get("d"),
            lifetime=[Decimal(x) for x in d["L"]],
            trailing=[Decimal(x) for x in d["T"]],
            prev_revenue=Decimal(d["P"]),
            referred=set(d.get("R", ())),
            referred_by=d.get("rb"),
            referral_at=_opt_t(d, "ra"),
            recent_alerts=[
                KeptAlert(
                    n,
                    _KINDS[kind],
                    _STATUS[prev],
                    _STATUS[status],
                    _ut(at),
                    trigger,
                    tuple(_bucket(trailing)),
                    tuple(_bucket(lifetime)),
                    Decimal(prev_revenue),
                )
                for n, kind, prev, status, at, trigger, trailing, lifetime, prev_revenue in d.get(
                    "A", ()
                )
            ],
        )
        if len(s.lifetime) != N_COMPONENTS or len(s.trailing) != N_COMPONENTS:
            raise ValueError("component vectors must have 8 entries")
        flat = d.get("B", ())
        day = 0
        for j in range(0, len(flat), 2):
            day += flat[j]
            s.buckets[day] = _bucket(flat[j + 1])
        _decode_ids(d.get("S", ()), s.seen)
        for tid, (cost, at) in d.get("K", {}).items():
            s.tickets[tid] = Ticket(Decimal(cost), _ut(at))
        for iid, inv in d.get("I", {}).items():
            if inv == 1:
                s.invoices[iid] = PAID
            else:
                st, amount, provision, carrying, at = inv
                s.invoices[iid] = Invoice(
                    _INVOICE_STATUS[st],
                    Decimal(amount),
                    Decimal(provision),
                    Decimal(carrying),
                    _ut(at),
                )
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as exc:
        raise StateFormatError(f"malformed customer state: {exc!r}") from None
    return s


def dumps(s: CustomerState) -> bytes:
    # ASCII-only output: an id holding a lone surrogate cannot break the encoding.
    return json.dumps(to_dict(s), separators=(",", ":")).encode("ascii")


def loads(raw: bytes) -> CustomerState:
    try:
        data = jiter.from_json(raw)
    except ValueError as exc:
        raise StateFormatError(f"customer state is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateFormatError("customer state must be a JSON object")
    return from_dict(data)
