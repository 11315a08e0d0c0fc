"""Per-customer ledger state: components as UTC day buckets with running sums.

The state is a small dataclass (it is the Faust table value, see `models.codec`).
Trailing and previous-window figures are kept as running sums aligned to the day
of `as_of`; moving `as_of` forward only touches the buckets that cross a window
edge, so an event costs O(days moved), never a re-sum of 180 buckets.

Zones, for the current day `d` and `W = window_days`:
    trailing   d - W  < day <= d            all components
    previous   d - 2W < day <= d - W        revenue only (all revenue_change needs)
    folded     day <= d - 2W                in `lifetime` only; the bucket is dropped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.money import ZERO

COMPONENTS: tuple[str, ...] = (
    "revenue",
    "cost_of_goods",
    "commissions",
    "fulfillment",
    "support",
    "sales",
    "overdue",
    "referral_value",
)
REV, COGS, COMM, FUL, SUP, SALES, OVD, REF = range(8)
COST_INDEXES: tuple[int, ...] = (COGS, COMM, FUL, SUP, SALES, OVD)
N_COMPONENTS = len(COMPONENTS)


def zeros() -> list[Decimal]:
    return [ZERO] * N_COMPONENTS


_ZEROS7 = (ZERO,) * (N_COMPONENTS - 1)


@dataclass(frozen=True, slots=True)
class Ticket:
    cost: Decimal  # cost(ticket) at its latest applied event, reporting currency
    at: int  # occurred_at (epoch µs) of that event


@dataclass(frozen=True, slots=True)
class Invoice:
    status: str  # "overdue" | "paid" | "written_off"
    amount_due: Decimal  # reporting currency
    provision: Decimal
    carrying: Decimal
    at: int


# What is left of a paid invoice: later events for it are stale whatever they say.
PAID = Invoice("paid", ZERO, ZERO, ZERO, 0)


@dataclass(frozen=True, slots=True)
class KeptAlert:
    """What an alert was built from (spec section 5); rebuilt on demand."""

    n: int  # the customer's alert number: alert_id = uuid5(…:<customer>:<n>)
    kind: str
    previous_status: str
    status: str
    as_of: int  # epoch µs
    trigger: str | None
    trailing: tuple[Decimal, ...]
    lifetime: tuple[Decimal, ...]
    prev_revenue: Decimal


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    status: str = "new"
    as_of: int | None = None  # epoch µs; only moves forward
    below_since: int | None = None
    first_seen: int | None = None
    last_event_at: int | None = None
    events_applied: int = 0
    alerts_emitted: int = 0  # the next alert is number alerts_emitted + 1
    day: int | None = None  # the UTC day the running sums are aligned to
    lifetime: list[Decimal] = field(default_factory=zeros)
    trailing: list[Decimal] = field(default_factory=zeros)
    prev_revenue: Decimal = ZERO
    buckets: dict[int, list[Decimal]] = field(default_factory=dict)
    # applied id -> (day applied << 1) | forwarded-bit. Days only grow, so the dict's
    # insertion order is also expiry order: pruning pops from the front.
    seen: dict[str, int] = field(default_factory=dict)
    # A lower bound of the day of the oldest id in `seen` (0: unknown). CPython leaves
    # a deleted entry's slot in place until the dict is resized, so looking at the
    # oldest id after pruning from the front walks past every pruned slot: this
    # bound lets `advance` skip that walk on the days nothing can expire.
    seen_floor: int = field(default=0, compare=False, repr=False)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    referred: set[str] = field(default_factory=set)
    referred_by: str | None = None
    referral_at: int | None = None
    # The customer's latest alerts, oldest first, at most `recent_alerts_kept`: the
    # query API answers from state, and a redelivered trigger re-sends its alert. Kept
    # as the inputs of `build_alert` (~200 bytes encoded), not as the ~1 KB message.
    recent_alerts: list[KeptAlert] = field(default_factory=list)
    # Per source topic-partition, the highest offset whose record was applied to this
    # customer: the transport's de-duplication, which unlike `seen` never expires (a
    # record redelivered after a crash can come after its id was forgotten, when a
    # fast backfill moves the customer two windows on within one commit interval).
    # Set and read by streams.processor only; replay has no offsets.
    positions: dict[str, int] = field(default_factory=dict)
    # models.codec's memo of this state's encoding (not state: never compared or
    # encoded). It relies on two habits of this module and the engine: `seen` only
    # grows at the end and shrinks at the front, and a bucket list is replaced, never
    # changed in place.
    codec_memo: Any = field(default=None, compare=False, repr=False)

    @property
    def has_own_events(self) -> bool:
        return self.first_seen is not None


def advance(state: CustomerState, new_day: int, window_days: int) -> None:
    """Align the running sums to `new_day` (>= the current day)."""
    d0 = state.day
    if d0 is None or new_day <= d0:
        if d0 is None:
            state.day = new_day
        return
    w = window_days
    buckets = state.buckets
    if buckets:
        if new_day - d0 <= w and 2 * (new_day - d0) < len(buckets):
            # Only the days crossing an edge. The two ranges are disjoint, and each
            # bucket in them moves exactly one zone.
            for day in range(d0 - w + 1, new_day - w + 1):
                b = buckets.get(day)
                if b is not None:
                    _leave_trailing(state, day, b, in_previous=True)
            for day in range(d0 - 2 * w + 1, new_day - 2 * w + 1):
                b = buckets.get(day)
                if b is not None:
                    state.prev_revenue -= b[REV]
                    del buckets[day]
        else:  # a long jump: walk the buckets instead of the days
            trailing_edge, previous_edge = new_day - w, new_day - 2 * w
            for day in sorted(buckets):
                b = buckets[day]
                if day > trailing_edge:
                    continue
                if day > d0 - w:
                    _leave_trailing(state, day, b, in_previous=day > previous_edge)
                elif day <= previous_edge:
                    state.prev_revenue -= b[REV]
                    del buckets[day]
    state.day = new_day
    # Remembered ids expire oldest first, only once the oldest can have expired.
    if state.seen_floor <= new_day - 2 * w and state.seen:
        state.seen_floor = _forget_ids(state.seen, new_day - 2 * w, new_day)


def _leave_trailing(state: CustomerState, day: int, b: list[Decimal], *, in_previous: bool) -> None:
    trailing = state.trailing
    for i, x in enumerate(b):
        if x:
            trailing[i] -= x
    if in_previous and b[REV]:
        # The previous window needs revenue only: keep the bucket lean.
        state.buckets[day] = [b[REV], *_ZEROS7]
        state.prev_revenue += b[REV]
    else:
        del state.buckets[day]


def _forget_ids(seen: dict[str, int], horizon: int, today: int) -> int:
    """Drop ids applied on or before `horizon` (the oldest come first); returns the
    day of the oldest id kept (`today` when none is: later ids are no older)."""
    expired = []
    oldest = today
    for event_id, mark in seen.items():
        if mark >> 1 > horizon:
            oldest = mark >> 1
            break
        expired.append(event_id)
    for event_id in expired:
        del seen[event_id]
    return oldest


def add(state: CustomerState, day: int, index: int, amount: Decimal, window_days: int) -> None:
    """Add a delta dated `day` (<= state.day) to component `index`."""
    if amount:
        add_many(state, day, ((index, amount),), window_days)


def add_many(
    state: CustomerState, day: int, deltas: tuple[tuple[int, Decimal], ...], window_days: int
) -> None:
    """Add deltas of one event (all dated `day` <= state.day)."""
    lifetime = state.lifetime
    d = state.day
    assert d is not None, "advance() before add()"
    buckets = state.buckets
    if day > d - window_days:
        old = buckets.get(day)
        # A new list, not the old one changed: the codec memoises buckets by identity.
        b = buckets[day] = zeros() if old is None else old.copy()
        trailing = state.trailing
        for i, amount in deltas:
            if amount:
                lifetime[i] += amount
                b[i] += amount
                trailing[i] += amount
        return
    for i, amount in deltas:
        if amount:
            lifetime[i] += amount
            if i == REV and day > d - 2 * window_days:  # the previous window: revenue only
                old = buckets.get(day)
                b = buckets[day] = zeros() if old is None else old.copy()
                b[REV] += amount
                state.prev_revenue += amount


def direct_profit(v: list[Decimal]) -> Decimal:
    return v[REV] - v[COGS] - v[COMM] - v[FUL] - v[SUP] - v[SALES] - v[OVD]


def net_profit(v: list[Decimal]) -> Decimal:
    return direct_profit(v) + v[REF]
