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
    O   applied positions: {source topic-partition: highest offset}; optional too
"""

from __future__ import annotations

import json
import operator
from decimal import Decimal
from itertools import islice
from typing import Any

import jiter
import pydantic_core

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


def _plain_ids(seen: dict[str, int]) -> list[int | str | list[str]]:
    """The layout for states holding an id with a "," (front coding joins on ",")."""
    flat: list[int | str | list[str]] = []
    mark = 0
    for event_id, m in seen.items():
        if not flat or m != mark:
            flat += (m - mark, [])
            mark = m
        flat[-1].append(event_id)  # type: ignore[union-attr]
    return flat


class _Memo:
    """What the last encoding of one state computed, to reuse in the next: each
    applied event adds an id and changes a bucket, and re-encoding a year of history
    from scratch costs ~0.6 ms here - once per state write, and a backfill writes a
    state for most records even when writes are coalesced per commit (few customers
    change twice between two commits). Lives in `CustomerState.codec_memo`."""

    __slots__ = (
        "bucket_texts",
        "bucket_vals",
        "codes",
        "commas",
        "head",
        "head_mark",
        "ids",
        "last_start",
        "marks",
        "run_marks",
        "run_sizes",
        "scanned",
    )

    def __init__(self) -> None:
        self.ids: list[str] = []  # the remembered ids encoded last time, in order
        self.marks: list[int] = []
        self.codes: list[str] = []  # each id front-coded against the one before it
        self.commas = 0  # ids holding a "," (then the plain-list layout is used)
        # The buckets encoded last time (kept alive, so their id()s stay theirs) and
        # their texts by id(): a bucket is replaced, never changed, when it changes.
        self.bucket_vals: list[list[Decimal]] = []
        self.bucket_texts: dict[int, str] = {}
        self._restart_groups()

    def _restart_groups(self) -> None:
        # "S" is [mark delta, ids, …] per run of equal marks. Every run but the last is
        # final until ids are forgotten, so it is encoded once into `head`.
        self.head: list[int | str] = []
        self.run_marks: list[int] = []  # mark and size of each run in `head`
        self.run_sizes: list[int] = []
        self.head_mark = 0  # the mark of the last run in `head`
        self.last_start = 0  # where the last (open) run starts in `ids`
        self.scanned = 0  # ids already placed in a run

    def append(self, event_id: str, mark: int) -> None:
        prev = self.ids[-1] if self.ids else ""
        n = _shared(prev, event_id)
        self.ids.append(event_id)
        self.marks.append(mark)
        self.codes.append(chr(_PREFIX_BASE + n) + event_id[n:])
        self.commas += "," in event_id

    def sync_ids(self, seen: dict[str, int]) -> None:
        """Catch up with `seen`, which only grows at the end and shrinks at the front."""
        ids = self.ids
        if ids and seen and ids[0] != next(iter(seen)):
            try:
                k = ids.index(next(iter(seen)))
            except ValueError:
                k = len(ids)
            self.commas -= sum("," in i for i in ids[:k])
            del ids[:k], self.marks[:k], self.codes[:k]
            if ids:  # the new first id has no id before it
                self.codes[0] = chr(_PREFIX_BASE) + ids[0]
            self._forget_runs(k)
        elif not seen and ids:
            ids.clear()
            self.marks.clear()
            self.codes.clear()
            self.commas = 0
            self._restart_groups()
        grown = len(seen) - len(ids)
        if grown > 0:
            for event_id, mark in list(islice(reversed(seen.items()), grown))[::-1]:
                self.append(event_id, mark)
        if (
            len(ids) != len(seen)
            or (ids and ids[-1] != next(reversed(seen)))
            # An id forgotten and later applied again comes back with a later mark;
            # if the first id kept its mark, so did every id after it.
            or (ids and self.marks[0] != seen[ids[0]])
        ):
            # Not the habits above (a state changed some other way): start over.
            self.ids, self.marks, self.codes, self.commas = [], [], [], 0
            self._restart_groups()
            for event_id, mark in seen.items():
                self.append(event_id, mark)

    def _forget_runs(self, k: int) -> None:
        """`k` ids left the front: drop the runs they filled, mend the one they cut."""
        sizes, left, r = self.run_sizes, k, 0
        while r < len(sizes) and left >= sizes[r]:
            left -= sizes[r]
            r += 1
        if r == len(sizes) or not self.codes:  # into the open run: rare, start over
            self._restart_groups()
            return
        del sizes[:r], self.run_marks[:r], self.head[: 2 * r]
        sizes[0] -= left
        self.head[0] = self.run_marks[0]  # the first run's mark counts from 0
        self.head[1] = ",".join(self.codes[: sizes[0]])  # its first id is coded anew
        self.last_start -= k
        self.scanned -= k

    def ids_flat(self, seen: dict[str, int]) -> list[int | str | list[str]]:
        self.sync_ids(seen)
        if self.commas:
            return _plain_ids(seen)
        marks, codes, n = self.marks, self.codes, len(self.marks)
        if not n:
            return []
        if self.scanned == 0:
            self.last_start, self.scanned = 0, 1
        start, run = self.last_start, marks[self.last_start]
        for j in range(self.scanned, n):  # only the ids added since the last call
            if marks[j] != run:
                self.head += (run - self.head_mark, ",".join(codes[start:j]))
                self.run_marks.append(run)
                self.run_sizes.append(j - start)
                self.head_mark, start, run = run, j, marks[j]
        self.last_start, self.scanned = start, n
        return [*self.head, run - self.head_mark, ",".join(codes[start:])]

    def buckets_flat(self, buckets: dict[int, list[Decimal]]) -> list[int | str]:
        # Built with map/zip (C loops): only changed buckets run Python code.
        days = sorted(buckets)
        vals = list(map(buckets.__getitem__, days))
        keys = list(map(id, vals))
        known = self.bucket_texts
        texts: list[str | None] = list(map(known.get, keys))
        if not known.keys() >= set(keys):  # a set compare, not a Python loop
            for i in [i for i, t in enumerate(texts) if t is None]:
                texts[i] = _amounts(vals[i])
        self.bucket_vals = vals
        self.bucket_texts = dict(zip(keys, texts, strict=True))  # type: ignore[arg-type]
        flat: list[int | str] = [0] * (2 * len(days))
        flat[0::2] = list(map(operator.sub, days, [0, *days[:-1]]))
        flat[1::2] = texts  # type: ignore[assignment]
        return flat


def _memo(s: CustomerState) -> _Memo:
    memo = s.codec_memo
    if memo is None:
        memo = s.codec_memo = _Memo()
    return memo  # type: ignore[no-any-return]


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


def to_dict(s: CustomerState, *, memo: bool = True) -> dict[str, Any]:
    """The state as the JSON value; `memo=False` encodes from scratch (tests compare)."""
    m = _memo(s) if memo else _Memo()
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
        out["B"] = m.buckets_flat(s.buckets)
    if s.seen:
        out["S"] = m.ids_flat(s.seen)
    elif memo and s.codec_memo is not None:
        m.sync_ids(s.seen)  # all forgotten: so must the memo be
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
    if s.positions:
        out["O"] = s.positions
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
        positions = d.get("O", {})
        if not isinstance(positions, dict) or not all(type(v) is int for v in positions.values()):
            raise ValueError("positions must map topic-partitions to offsets")
        s.positions = dict(positions)
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
    value = to_dict(s)
    try:
        # pydantic-core's serializer (Rust): ~2.7x the json module here, same bytes for
        # ASCII text, UTF-8 otherwise.
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:
        # An id holding a lone surrogate (not UTF-8): JSON's \u escapes carry it.
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def loads(raw: bytes) -> CustomerState:
    try:
        data = jiter.from_json(raw)
    except ValueError as exc:
        try:  # jiter refuses the \u escape of a lone surrogate; the json module reads it
            data = json.loads(raw)
        except ValueError:
            raise StateFormatError(f"customer state is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StateFormatError("customer state must be a JSON object")
    return from_dict(data)
