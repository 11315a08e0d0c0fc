"""A seeded, realistic input stream in replay format (spec sections 2 and 9).

`profitwatch generate` writes it; tests and benchmarks replay it. The stream is a
discrete-event simulation: every customer runs a few processes (orders, support
tickets, sales effort, dunning of overdue invoices, referrals) whose next step sits
in a time-ordered queue, so records come out in `occurred_at` order while memory
holds only each process's next step, never the whole stream.

Customers follow `ARCHETYPES` (see `_PROFILES`), about 20 records per customer
per 30 days (some 240 a year). What upstream really does is in the stream too, at
configurable rates: redelivered records (an identical copy shortly after the
original), stale ticket updates (an older update re-sent after the ticket's latest
one), and bad records of every kind the contract rejects, at deterministic positions.
`generate_labelled` says for each record what the engine must do with it.

Determinism: one `random.Random(seed)`, consumed in queue order, and no clock. The
same config gives byte-identical lines. The generator does not look at the wall
clock, so a config whose period reaches past "now" yields records the engine
rejects as `future_timestamp`; keep `start + days` in the past for replay.

Money is simulated with binary floats and written rounded to cents, as a JSON
number or a decimal string (per customer, as different upstream systems do); the
engine parses the text into `Decimal`, so nothing downstream computes with a float.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from heapq import heapify, heappop, heappush
from math import log
from typing import Any, Final, Literal, overload

from models.errors import REJECTION_CODES

ARCHETYPES: Final = (
    "healthy",
    "declining",
    "bad_payer",
    "referrer",
    "heavy_returner",
    "costly_acquisition",
)

# The DLQ codes the generator produces, in the order it cycles through them.
# `payload_too_large` is left out on purpose: it would bloat every stream.
BAD_KINDS: Final = tuple(code for code in REJECTION_CODES if code != "payload_too_large")

# Archetypes are dealt from shuffled blocks with these exact counts (summing to 50),
# so every block of 50 customers has the intended mix and small configs still see
# every archetype, instead of depending on the luck of independent draws.
_BLOCK: Final = (
    ("healthy", 19),
    ("declining", 8),
    ("bad_payer", 6),
    ("referrer", 4),
    ("heavy_returner", 6),
    ("costly_acquisition", 7),
)

_CURRENCIES: Final = (("EUR", 0.70), ("USD", 0.15), ("GBP", 0.10), ("CHF", 0.05))
# Local units per EUR, the inverse of the default FX table, so a 1000 EUR order of
# a USD customer reads as about 1087 USD, as it would on the real invoice.
_PER_EUR: Final = {"EUR": 1.0, "USD": 1 / 0.92, "GBP": 1 / 1.17, "CHF": 1 / 1.06}

_CHANNELS: Final = ("phone", "email", "chat", "onsite", "self_service")
_CATEGORIES: Final = ("complaint", "question", "incident", "request")
_SALES_KINDS: Final = ("call", "visit", "demo", "proposal", "account_review", "other")
_SALES_COST_EUR: Final = {
    "call": (15.0, 60.0),
    "visit": (250.0, 700.0),
    "demo": (150.0, 450.0),
    "proposal": (100.0, 400.0),
    "account_review": (80.0, 250.0),
    "other": (20.0, 120.0),
}
# Relationship upkeep versus an acquisition campaign: different mixes of effort.
_UPKEEP_WEIGHTS: Final = (0.50, 0.08, 0.02, 0.02, 0.25, 0.13)
_CAMPAIGN_WEIGHTS: Final = (0.15, 0.30, 0.30, 0.25, 0.0, 0.0)

DAY: Final = 86_400
HOUR: Final = 3_600
_NET_TERMS_DAYS: Final = 30  # invoices fall due 30 days after the order
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

Value = dict[str, Any] | str


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Rates are shares of the stream; 0 turns a habit off."""

    customers: int = 50
    days: int = 365
    seed: int = 7
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)  # aware
    bad_record_rate: float = 0.002  # share of records that are bad (must be rejected), <= 0.5
    duplicate_rate: float = 0.01  # share of events redelivered (same event_id, identical value)
    stale_rate: float = 0.01  # share of ticket updates re-sent late with an older occurred_at
    # Upstream systems publish with delays: each pair of neighbouring records of
    # different topics less than a day apart is swapped with this probability, so a
    # file is no longer in event-time order across topics (contract section 9).
    jitter: float = 0.05
    # Scales how often customers order, open tickets and get sales effort: 1 is ~240
    # records per customer-year; ~0.23 is ~55, a mid-market book.
    activity: float = 1.0

    def __post_init__(self) -> None:
        if self.customers < 0:
            raise ValueError("customers must be >= 0")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be an aware datetime (with an offset)")
        if not self.activity > 0:
            raise ValueError("activity must be > 0")
        for name in ("bad_record_rate", "duplicate_rate", "stale_rate", "jitter"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


@dataclass(frozen=True, slots=True)
class _Profile:
    """How an archetype behaves. Rates are per day; `*_trend` is the factor a rate
    (or the order size) reaches at the end of the customer's time in the stream,
    moving linearly from 1 at its first event."""

    orders_per_day: float
    order_trend: float
    order_eur: float
    size_trend: float
    cogs: tuple[float, float]  # cost of goods as a share of revenue
    commission: float  # share of revenue
    fulfil_prob: float  # orders needing extra handling or special delivery
    fulfil_eur: tuple[float, float]
    return_prob: tuple[float, float]  # per-customer range
    return_share: tuple[float, float]  # share of the order that comes back
    return_fee_eur: tuple[float, float]
    tickets_per_day: float
    ticket_trend: float
    channels: tuple[float, ...]  # weights over _CHANNELS
    updates: tuple[int, int]  # events per ticket
    minutes: tuple[int, int]  # minutes added per update
    escalate: float  # per update, once escalated a ticket stays so
    complaint: float
    sales_per_day: float
    campaign_per_day: float  # extra acquisition effort in the first `campaign_days`
    campaign_days: tuple[int, int]
    overdue_prob: tuple[float, float]  # share of invoices going overdue: start, end
    write_off: float  # shares of overdue invoices by outcome; the rest is paid soon
    paid_late: float
    recovered: float  # written-off invoices paid after all


# A table: one archetype per block reads better than one field per line.
# fmt: off
_PROFILES: Final = {
    # Steady orders at a good margin, little support, invoices paid.
    "healthy": _Profile(
        orders_per_day=0.45, order_trend=1.0, order_eur=800.0, size_trend=1.0,
        cogs=(0.52, 0.62), commission=0.04, fulfil_prob=0.10, fulfil_eur=(10.0, 40.0),
        return_prob=(0.01, 0.05), return_share=(0.2, 1.0), return_fee_eur=(10.0, 30.0),
        tickets_per_day=0.03, ticket_trend=1.0, channels=(0.15, 0.40, 0.25, 0.0, 0.20),
        updates=(2, 3), minutes=(5, 25), escalate=0.01, complaint=0.15,
        sales_per_day=0.05, campaign_per_day=0.0, campaign_days=(0, 0),
        overdue_prob=(0.03, 0.03), write_off=0.02, paid_late=0.10, recovered=0.0,
    ),
    # Orders thin out and shrink while tickets pile up, phone and on-site, escalated.
    "declining": _Profile(
        orders_per_day=0.43, order_trend=0.10, order_eur=700.0, size_trend=0.5,
        cogs=(0.58, 0.64), commission=0.04, fulfil_prob=0.10, fulfil_eur=(10.0, 40.0),
        return_prob=(0.03, 0.08), return_share=(0.2, 1.0), return_fee_eur=(10.0, 40.0),
        tickets_per_day=0.03, ticket_trend=6.0, channels=(0.40, 0.20, 0.15, 0.15, 0.10),
        updates=(3, 6), minutes=(15, 60), escalate=0.10, complaint=0.45,
        sales_per_day=0.06, campaign_per_day=0.0, campaign_days=(0, 0),
        overdue_prob=(0.04, 0.10), write_off=0.05, paid_late=0.30, recovered=0.0,
    ),
    # Buys steadily but pays ever later: invoices go overdue, many are written off.
    "bad_payer": _Profile(
        orders_per_day=0.30, order_trend=1.0, order_eur=700.0, size_trend=1.0,
        cogs=(0.60, 0.66), commission=0.04, fulfil_prob=0.05, fulfil_eur=(10.0, 40.0),
        return_prob=(0.02, 0.05), return_share=(0.2, 1.0), return_fee_eur=(10.0, 30.0),
        tickets_per_day=0.04, ticket_trend=1.5, channels=(0.35, 0.35, 0.20, 0.0, 0.10),
        updates=(2, 4), minutes=(10, 30), escalate=0.04, complaint=0.30,
        sales_per_day=0.05, campaign_per_day=0.0, campaign_days=(0, 0),
        overdue_prob=(0.30, 0.95), write_off=0.55, paid_late=0.30, recovered=0.10,
    ),
    # Small orders, thin direct margin; its value is the customers it brings in.
    "referrer": _Profile(
        orders_per_day=0.07, order_trend=1.0, order_eur=300.0, size_trend=1.0,
        cogs=(0.60, 0.68), commission=0.05, fulfil_prob=0.05, fulfil_eur=(5.0, 20.0),
        return_prob=(0.02, 0.05), return_share=(0.2, 1.0), return_fee_eur=(5.0, 20.0),
        tickets_per_day=0.03, ticket_trend=1.0, channels=(0.20, 0.40, 0.25, 0.0, 0.15),
        updates=(2, 3), minutes=(5, 25), escalate=0.02, complaint=0.10,
        sales_per_day=0.03, campaign_per_day=0.0, campaign_days=(0, 0),
        overdue_prob=(0.03, 0.03), write_off=0.05, paid_late=0.20, recovered=0.0,
    ),
    # Sends back much of what it buys: return handling and complaints eat the margin.
    "heavy_returner": _Profile(
        orders_per_day=0.40, order_trend=1.0, order_eur=600.0, size_trend=1.0,
        cogs=(0.62, 0.70), commission=0.05, fulfil_prob=0.50, fulfil_eur=(15.0, 40.0),
        return_prob=(0.30, 0.55), return_share=(0.6, 1.0), return_fee_eur=(35.0, 95.0),
        tickets_per_day=0.10, ticket_trend=1.0, channels=(0.25, 0.40, 0.25, 0.0, 0.10),
        updates=(2, 4), minutes=(10, 30), escalate=0.03, complaint=0.60,
        sales_per_day=0.04, campaign_per_day=0.0, campaign_days=(0, 0),
        overdue_prob=(0.04, 0.04), write_off=0.05, paid_late=0.20, recovered=0.0,
    ),
    # Won with visits, demos and proposals; modest orders take months to pay that back.
    "costly_acquisition": _Profile(
        orders_per_day=0.20, order_trend=1.0, order_eur=500.0, size_trend=1.0,
        cogs=(0.55, 0.62), commission=0.06, fulfil_prob=0.10, fulfil_eur=(10.0, 30.0),
        return_prob=(0.02, 0.05), return_share=(0.2, 1.0), return_fee_eur=(10.0, 30.0),
        tickets_per_day=0.04, ticket_trend=0.7, channels=(0.25, 0.30, 0.25, 0.05, 0.15),
        updates=(2, 4), minutes=(10, 40), escalate=0.03, complaint=0.10,
        sales_per_day=0.04, campaign_per_day=0.35, campaign_days=(60, 120),
        overdue_prob=(0.04, 0.04), write_off=0.05, paid_late=0.20, recovered=0.0,
    ),
}
# fmt: on

_REFERRALS_PER_REFERRER: Final = (2, 4)
_REFERRAL_AFTER_JOIN_DAYS: Final = (3.0, 75.0)
_REFERRED_JOIN_DELAY_DAYS: Final = (0.5, 10.0)
# Customers won by an acquisition campaign arrive during the first 40% of the
# period; the rest of the base exists already and shows up within three weeks.
_BASE_JOIN_DAYS: Final = 21.0
_CAMPAIGN_JOIN_SHARE: Final = 0.4
# Who gets referred: word of mouth brings in ordinary buyers. Customers won by a
# costly campaign were not referred, referrers are kept out of chains, and the
# declining and bad-payer stories need the whole year from an early start.
_REFERABLE: Final = frozenset({"healthy", "heavy_returner"})

_EVENT_ID: Final = "ev-%07d"  # printf style: cheaper than an f-string with a format spec
_SLOT: Final = 3_600  # seconds per calendar slot of the event queue
_LATE_SLOTS: Final = 3 * 24  # redeliveries and stale updates arrive within 3 days
_FIRST_BAD_SPACING: Final = 300  # every kind appears within the first 2,000 records


def customer_archetypes(cfg: GeneratorConfig) -> list[str]:
    """The archetype of each customer; index i is customer `cust-{i+1:05d}`."""
    return _deal_archetypes(random.Random(cfg.seed), cfg.customers)


def customer_id(i: int) -> str:
    return f"cust-{i + 1:05d}"


def _deal_archetypes(rng: random.Random, n: int) -> list[str]:
    block = [name for name, count in _BLOCK for _ in range(count)]
    out: list[str] = []
    while len(out) < n:
        deal = block[:]
        rng.shuffle(deal)
        out.extend(deal[: n - len(out)])
    return out


@cache
def _clock_table() -> tuple[str, ...]:
    # 86,400 strings built once beat formatting a datetime for every record.
    return tuple(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(DAY))


def _money_number(x: float) -> float | str:
    return round(x, 2)


def _money_text(x: float) -> float | str:
    return f"{x:.2f}"


def _weighted(weights: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(itertools.accumulate(w / total for w in weights))


def _pick(u: float, names: tuple[str, ...], cumulative: tuple[float, ...]) -> str:
    for name, edge in zip(names, cumulative, strict=True):
        if u < edge:
            return name
    return names[-1]


@dataclass(frozen=True, slots=True)
class _Shape:
    """One record layout: the value's keys and the replay line as a `%` template.

    The simulation keeps money as raw floats; only the output rounds them to cents.
    `json.dumps` and shortest-repr float formatting cost more than simulating the
    event, so lines are filled in from the values directly, money with `%.2f`.
    Every other value is an ASCII id, a timestamp or an integer, so a line is
    `json.dumps({"topic": topic, "value": value})` of the record `value()` gives,
    except that a money number always shows two decimals (`12.30` for `12.3`):
    the same JSON number. Constant fields come last."""

    topic: str
    keys: tuple[str, ...]
    money: tuple[int, ...]  # positions of the money values
    text_money: bool
    consts: tuple[Any, ...]
    template: str

    def value(self, data: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(zip(self.keys, data + self.consts if self.consts else data, strict=True))
        cents = _money_text if self.text_money else _money_number
        keys = self.keys
        for i in self.money:
            out[keys[i]] = cents(data[i])
        return out


def _shape(topic: str, fields: str, text_money: bool, **consts: Any) -> _Shape:
    """`fields`: space-separated keys; `$key` is money, `#key` an integer."""
    keys: list[str] = []
    money: list[int] = []
    parts: list[str] = []
    for i, f in enumerate(fields.split()):
        key = f.lstrip("$#")
        keys.append(key)
        if f[0] == "$":
            money.append(i)
            parts.append(f'"{key}": "%.2f"' if text_money else f'"{key}": %.2f')
        else:
            parts.append(f'"{key}": %s' if f[0] == "#" else f'"{key}": "%s"')
    for key, v in consts.items():
        keys.append(key)
        parts.append(f'"{key}": ' + json.dumps(v))
    template = '{"topic": "' + topic + '", "value": {' + ", ".join(parts) + "}}"
    return _Shape(topic, tuple(keys), tuple(money), text_money, tuple(consts.values()), template)


_COMMON = "event_id customer_id occurred_at"
_ORDER = f"{_COMMON} currency order_id $revenue $cost_of_goods $commission"
_TICKET = f"{_COMMON} ticket_id channel #handling_minutes category"


@dataclass(frozen=True, slots=True)
class _Shapes:
    """The layouts of one money style: JSON numbers or decimal strings."""

    order: _Shape
    order_fulfilled: _Shape
    returned: _Shape
    ticket: _Shape
    ticket_escalated: _Shape
    referral: _Shape
    activity: _Shape
    invoice: _Shape

    @classmethod
    def build(cls, text_money: bool) -> _Shapes:
        t = text_money
        return cls(
            order=_shape("orders", _ORDER, t),
            order_fulfilled=_shape("orders", f"{_ORDER} $fulfillment_cost", t),
            returned=_shape("orders", f"{_ORDER} $fulfillment_cost", t, kind="returned"),
            ticket=_shape("support-tickets", _TICKET, t, escalated=False),
            ticket_escalated=_shape("support-tickets", _TICKET, t, escalated=True),
            referral=_shape("referrals", f"{_COMMON} referred_customer_id", t),
            activity=_shape("sales-activities", f"{_COMMON} currency activity_id kind $cost", t),
            invoice=_shape(
                "invoice-overdue", f"{_COMMON} currency invoice_id status $amount_due due_date", t
            ),
        )


_NUMBER_SHAPES: Final = _Shapes.build(text_money=False)
_TEXT_SHAPES: Final = _Shapes.build(text_money=True)

# What the simulation yields: (shape, values in key order, label), or for a bad
# record, whose layout is irregular, (None, (topic, value), label).
Record = tuple[_Shape | None, Any, str]
_APPLIED: Final = "applied"


@dataclass(slots=True, eq=False)
class _Customer:
    id: str
    p: _Profile
    currency: str
    fx: float  # local units per EUR
    money: Callable[[float], float | str]  # for the hand-built bad records
    shapes: _Shapes
    join: int  # epoch seconds of its first event
    order_rate: float
    order_eur: float
    return_prob: float
    campaign_len: int  # seconds
    channels: tuple[float, ...]
    campaign_end: int = 0
    n_orders: int = 0
    n_tickets: int = 0
    n_invoices: int = 0
    n_activities: int = 0

    # Trends: a factor moving linearly from 1 at the join to the profile's `*_trend`
    # at the end of the stream is `1 + slope * (t - join)`; likewise the overdue odds.
    order_slope: float = 0.0
    size_slope: float = 0.0
    ticket_slope: float = 0.0
    overdue_slope: float = 0.0


@dataclass(slots=True, eq=False)
class _Ticket:
    c: _Customer
    id: str
    channel: str
    category: str
    left: int  # updates still to come
    minutes: int = 0
    escalated: bool = False
    history: list[tuple[int, int, bool]] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Invoice:
    c: _Customer
    id: str
    amount: float
    due: str
    steps: list[tuple[int, str]]  # (occurred_at, status), latest first: popped from the end


# A queue entry: (time, tie-breaker, action, argument). The tie-breaker is a counter,
# so equal times keep scheduling order and actions are never compared.
_Action = Callable[[int, Any], Record | None]
_Entry = tuple[int, int, _Action, Any]


def _expo(rnd: Callable[[], float], rate: float) -> float:
    """An exponential gap (in days) for a Poisson process with `rate` (> 0) per day."""
    return -log(1.0 - rnd()) / rate


class _Simulation:
    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.rng = rng = random.Random(cfg.seed)
        self.rnd = rng.random
        start = cfg.start.timestamp()
        self.t0 = t0 = -int(-start // 1)  # the first whole second >= start
        self.t_end = max(t0 + 1, int((start + cfg.days * DAY) // 1))
        # The queue is a calendar of one-hour slots: future slots are plain lists
        # (an append per step), only the current one is a heap, so heap operations
        # stay cheap however many customers there are. Pop order is that of one
        # global heap: (time, tie-breaker). Redeliveries and stale updates may be
        # sent up to a few days after the end.
        self.slots: list[list[_Entry]] = [
            [] for _ in range((self.t_end - t0) // _SLOT + _LATE_SLOTS + 1)
        ]
        self.slot = -1  # the slot being played, whose entries live in `self.current`
        self.current: list[_Entry] = []
        self.seq = itertools.count()
        self.next_event = itertools.count(1)
        self.clock = _clock_table()
        # Every day a record or a due date can fall on, formatted up front.
        self.days = {
            d: date.fromordinal(_EPOCH_ORDINAL + d).isoformat()
            for d in range(t0 // DAY - 1, self.t_end // DAY + _NET_TERMS_DAYS + 16)
        }
        self.dup_rate = cfg.duplicate_rate
        self.activity = cfg.activity
        self.stale_rate = cfg.stale_rate
        self.customers: list[_Customer] = []
        # Bound once: these are pushed for most records.
        self.order_action: _Action = self._order
        self.update_action: _Action = self._ticket_update
        self.sales_action: _Action = self._sales
        self.invoice_action: _Action = self._invoice_step
        self._populate(_deal_archetypes(rng, cfg.customers))

    # ---- helpers -------------------------------------------------------------------

    def push(self, t: int, action: _Action, arg: Any) -> None:
        """Schedule a step of a process; what would happen after the stream ends never does."""
        if t < self.t_end:
            self.put(t, action, arg)

    def put(self, t: int, action: _Action, arg: Any) -> None:
        """Queue an entry at `t` (not before the current time)."""
        i = (t - self.t0) // _SLOT
        if i == self.slot:
            heappush(self.current, (t, next(self.seq), action, arg))
        else:
            self.slots[i].append((t, next(self.seq), action, arg))

    def day_text(self, day: int) -> str:
        s = self.days.get(day)
        if s is None:
            s = self.days[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
        return s

    def ts(self, t: int) -> str:
        d, s = divmod(t, DAY)
        return self.days[d] + self.clock[s]

    def event_id(self) -> str:
        return _EVENT_ID % next(self.next_event)

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.rnd()

    # ---- the population ------------------------------------------------------------

    def _populate(self, archetypes: list[str]) -> None:
        rnd, uniform, span = self.rnd, self.uniform, self.t_end - self.t0
        currencies = tuple(c for c, _ in _CURRENCIES)
        currency_edges = _weighted(tuple(w for _, w in _CURRENCIES))
        customers = self.customers
        for i, name in enumerate(archetypes):
            p = _PROFILES[name]
            currency = _pick(rnd(), currencies, currency_edges)
            spread = (
                span * _CAMPAIGN_JOIN_SHARE
                if p.campaign_per_day
                else (min(span, _BASE_JOIN_DAYS * DAY))
            )
            text_money = rnd() < 0.35
            customers.append(
                _Customer(
                    id=customer_id(i),
                    p=p,
                    currency=currency,
                    fx=_PER_EUR[currency],
                    money=_money_text if text_money else _money_number,
                    shapes=_TEXT_SHAPES if text_money else _NUMBER_SHAPES,
                    join=self.t0 + int(rnd() * spread),
                    order_rate=p.orders_per_day * uniform(0.7, 1.3) * self.activity,
                    order_eur=p.order_eur * uniform(0.6, 1.5),
                    return_prob=uniform(*p.return_prob),
                    campaign_len=int(uniform(*p.campaign_days) * DAY),
                    channels=_weighted(p.channels),
                )
            )

        # Referrals: each referrer brings in a few customers of the referable pool, who
        # arrive (and first order) only after the referral.
        pool = [i for i, name in enumerate(archetypes) if name in _REFERABLE]
        self.rng.shuffle(pool)
        lo, hi = _REFERRALS_PER_REFERRER
        for i, name in enumerate(archetypes):
            if name != "referrer":
                continue
            referrer = customers[i]
            times = sorted(
                referrer.join + int(uniform(*_REFERRAL_AFTER_JOIN_DAYS) * DAY)
                for _ in range(lo + int(rnd() * (hi - lo + 1)))
            )
            for at in times:
                if not pool:
                    break
                referred = customers[pool.pop()]
                self.push(at, self._referral, (referrer, referred))
                referred.join = at + int(uniform(*_REFERRED_JOIN_DELAY_DAYS) * DAY)

        for c in customers:
            p = c.p
            life = max(1, self.t_end - c.join)
            c.order_slope = (p.order_trend - 1.0) / life
            c.size_slope = (p.size_trend - 1.0) / life
            c.ticket_slope = (p.ticket_trend - 1.0) / life
            c.overdue_slope = (p.overdue_prob[1] - p.overdue_prob[0]) / life
            c.campaign_end = c.join + c.campaign_len
            self.push(c.join, self._join, c)

    # ---- actions: each emits at most one record and schedules what follows -------

    def _join(self, t: int, c: _Customer) -> Record | None:
        p, rnd = c.p, self.rnd
        # A campaign customer is courted before it buys; the others start with an order.
        first_order = t + (int(self.uniform(3, 20) * DAY) if p.campaign_per_day else 0)
        self.push(first_order, self.order_action, c)
        self.push(
            t + int(_expo(rnd, p.tickets_per_day * self.activity) * DAY), self._ticket_open, c
        )
        self.push(t + int(rnd() * HOUR), self.sales_action, c)
        return None

    def _referral(self, t: int, arg: tuple[_Customer, _Customer]) -> Record:
        referrer, referred = arg
        data = (self.event_id(), referrer.id, self.ts(t), referred.id)
        return referrer.shapes.referral, data, _APPLIED

    def _order(self, t: int, c: _Customer) -> Record:
        # The hot path (half the records): helpers are inlined.
        p, rnd = c.p, self.rnd
        age = t - c.join
        nxt = t + 60 + int(-log(1.0 - rnd()) / (c.order_rate * (1.0 + c.order_slope * age)) * DAY)
        if nxt < self.t_end:  # put(), inlined
            i = (nxt - self.t0) // _SLOT
            if i == self.slot:
                heappush(self.current, (nxt, next(self.seq), self.order_action, c))
            else:
                self.slots[i].append((nxt, next(self.seq), self.order_action, c))

        c.n_orders = n = c.n_orders + 1
        order_id = f"{c.id}-o{n}"
        revenue = c.order_eur * (1.0 + c.size_slope * age) * c.fx * (0.5 + rnd())
        lo, hi = p.cogs
        cogs = revenue * (lo + (hi - lo) * rnd())
        commission = revenue * p.commission
        d, s = divmod(t, DAY)
        head = (
            _EVENT_ID % next(self.next_event),
            c.id,
            self.days[d] + self.clock[s],
            c.currency,
            order_id,
            revenue,
            cogs,
            commission,
        )
        if rnd() < c.return_prob:
            back = t + int((3 + 22 * rnd()) * DAY)
            self.push(back, self._return, (c, order_id, revenue, cogs, commission))
        if rnd() < p.overdue_prob[0] + c.overdue_slope * age:
            self._plan_invoice(t, c, revenue)
        if rnd() < p.fulfil_prob:
            lo, hi = p.fulfil_eur
            fee = (lo + (hi - lo) * rnd()) * c.fx
            return c.shapes.order_fulfilled, (*head, fee), _APPLIED
        return c.shapes.order, head, _APPLIED

    def _return(self, t: int, arg: tuple[_Customer, str, float, float, float]) -> Record:
        c, order_id, revenue, cogs, commission = arg
        p = c.p
        share = self.uniform(*p.return_share)
        fee = self.uniform(*p.return_fee_eur) * c.fx
        return (
            c.shapes.returned,
            (
                self.event_id(),
                c.id,
                self.ts(t),
                c.currency,
                order_id,
                revenue * share,
                cogs * share,
                commission * share,
                fee,
            ),
            _APPLIED,
        )

    def _ticket_open(self, t: int, c: _Customer) -> Record | None:
        p, rnd = c.p, self.rnd
        rate = p.tickets_per_day * self.activity * (1.0 + c.ticket_slope * (t - c.join))
        self.push(t + 60 + int(_expo(rnd, rate) * DAY), self._ticket_open, c)
        c.n_tickets += 1
        lo, hi = p.updates
        category = "complaint" if rnd() < p.complaint else _CATEGORIES[1 + int(rnd() * 3)]
        ticket = _Ticket(
            c,
            f"{c.id}-t{c.n_tickets}",
            _pick(rnd(), _CHANNELS, c.channels),
            category,
            lo + int(rnd() * (hi - lo + 1)),
        )
        return self.update_action(t, ticket)

    def _ticket_update(self, t: int, k: _Ticket) -> Record:
        p, rnd = k.c.p, self.rnd
        lo, hi = p.minutes
        k.minutes += lo + int(rnd() * (hi - lo + 1))
        if not k.escalated and rnd() < p.escalate:
            k.escalated = True
        k.left -= 1
        if k.left > 0:
            nxt = t + HOUR + int(rnd() * 35 * HOUR)
            if nxt < self.t_end:  # put(), inlined
                i = (nxt - self.t0) // _SLOT
                if i == self.slot:
                    heappush(self.current, (nxt, next(self.seq), self.update_action, k))
                else:
                    self.slots[i].append((nxt, next(self.seq), self.update_action, k))
            if self.stale_rate:
                k.history.append((t, k.minutes, k.escalated))
        elif k.history:
            # The ticket's last update: earlier ones may now be re-sent by a lagging
            # producer. The odds are scaled so that about `stale_rate` of all updates
            # (not only of the earlier ones) come back.
            n = len(k.history)
            odds = self.stale_rate * (n + 1) / n
            for old in k.history:
                if rnd() < odds:
                    # Sent late on purpose: may fall after the end of the stream.
                    late = t + 600 + int(rnd() * 2 * DAY)
                    self.put(late, self._stale_update, (k, old))
            k.history = []
        c = k.c
        d, s = divmod(t, DAY)
        return (
            c.shapes.ticket_escalated if k.escalated else c.shapes.ticket,
            (
                _EVENT_ID % next(self.next_event),
                c.id,
                self.days[d] + self.clock[s],
                k.id,
                k.channel,
                k.minutes,
                k.category,
            ),
            _APPLIED,
        )

    def _ticket_data(self, t: int, k: _Ticket, minutes: int) -> tuple[Any, ...]:
        d, s = divmod(t, DAY)
        return (
            _EVENT_ID % next(self.next_event),
            k.c.id,
            self.days[d] + self.clock[s],
            k.id,
            k.channel,
            minutes,
            k.category,
        )

    def _stale_update(self, t: int, arg: tuple[_Ticket, tuple[int, int, bool]]) -> Record:
        k, (at, minutes, escalated) = arg
        shapes = k.c.shapes
        return (
            shapes.ticket_escalated if escalated else shapes.ticket,
            self._ticket_data(at, k, minutes),
            "stale",
        )

    def _sales(self, t: int, c: _Customer) -> Record:
        p, rnd = c.p, self.rnd
        campaign = t < c.campaign_end
        rate = (p.sales_per_day + (p.campaign_per_day if campaign else 0.0)) * self.activity
        nxt = t + 60 + int(-log(1.0 - rnd()) / rate * DAY)
        if nxt < self.t_end:
            self.put(nxt, self.sales_action, c)
        kind = _pick(rnd(), _SALES_KINDS, _CAMPAIGN_EDGES if campaign else _UPKEEP_EDGES)
        lo, hi = _SALES_COST_EUR[kind]
        c.n_activities = n = c.n_activities + 1
        d, s = divmod(t, DAY)
        return (
            c.shapes.activity,
            (
                _EVENT_ID % next(self.next_event),
                c.id,
                self.days[d] + self.clock[s],
                c.currency,
                f"{c.id}-s{n}",
                kind,
                (lo + (hi - lo) * rnd()) * c.fx,
            ),
            _APPLIED,
        )

    def _plan_invoice(self, t: int, c: _Customer, revenue: float) -> None:
        p, rnd, uniform = c.p, self.rnd, self.uniform
        due_day = t // DAY + _NET_TERMS_DAYS

        def at(days_overdue: float) -> int:
            # Whole days after the due date, so days_overdue >= 1 holds on the UTC date.
            return (due_day + max(1, int(days_overdue))) * DAY + int(rnd() * DAY)

        first = uniform(1, 12)
        steps = [(at(first), "overdue")]
        u = rnd()
        if u < p.write_off:
            target = uniform(90, 150)
            d = first + uniform(14, 30)
            while d < target - 1:
                steps.append((at(d), "overdue"))
                d += uniform(14, 30)
            steps.append((at(target), "written_off"))
            if rnd() < p.recovered:
                steps.append((at(target + uniform(20, 90)), "paid"))
        elif u < p.write_off + p.paid_late:
            d = first
            for _ in range(1 + int(rnd() * 3)):
                d += uniform(14, 30)
                steps.append((at(d), "overdue"))
            steps.append((at(d + uniform(5, 20)), "paid"))
        else:
            steps.append((at(first + uniform(2, 20)), "paid"))
        # Steps at least a whole day apart land on later days than the ones before, so
        # none of them is stale; those past the end of the stream never happen.
        steps = [s for s in reversed(steps) if s[0] < self.t_end]
        if not steps:
            return
        c.n_invoices += 1
        inv_id = f"{c.id}-i{c.n_invoices}"
        inv = _Invoice(c, inv_id, revenue, self.day_text(due_day), steps)
        self.push(steps[-1][0], self.invoice_action, inv)

    def _invoice_step(self, t: int, inv: _Invoice) -> Record:
        steps = inv.steps
        _, status = steps.pop()
        if steps:
            self.put(steps[-1][0], self.invoice_action, inv)
        c = inv.c
        d, s = divmod(t, DAY)
        return (
            c.shapes.invoice,
            (
                _EVENT_ID % next(self.next_event),
                c.id,
                self.days[d] + self.clock[s],
                c.currency,
                inv.id,
                status,
                inv.amount,
                inv.due,
            ),
            _APPLIED,
        )

    # ---- bad records ---------------------------------------------------------------

    def bad_positions(self) -> Iterator[int]:
        """After how many simulated records each bad record goes (bad ones not counted):
        every kind early on, then one per `(1 - rate) / rate` records."""
        rate = self.cfg.bad_record_rate
        if rate <= 0:
            return
        interval = max(1, round((1 - rate) / rate))
        first = min(interval, _FIRST_BAD_SPACING)
        n = 0
        for _ in BAD_KINDS:
            n += first
            yield n
        while True:
            n += interval
            yield n

    def bad_record(self, k: int, t: int, c: _Customer) -> Record:
        """The k-th bad record, about customer `c` at stream time `t`: kinds take turns,
        and so do the variants within a kind."""
        kind = BAD_KINDS[k % len(BAD_KINDS)]
        variant = k // len(BAD_KINDS)
        t = min(max(t, self.t0), self.t_end - 1)
        ts = self.ts(t)
        m = c.money
        base: dict[str, Any] = {"event_id": self.event_id(), "customer_id": c.id}
        order = {
            **base,
            "occurred_at": ts,
            "currency": c.currency,
            "order_id": f"{c.id}-o{c.n_orders}",
            "revenue": m(120.0 * c.fx),
            "cost_of_goods": m(80.0 * c.fx),
            "commission": m(4.0),
        }
        label = "rejected:" + kind
        value: Value
        topic = "orders"
        if kind == "malformed_json":
            text = json.dumps(order)
            # Cut off mid-record, or a producer that wrote Python's repr instead of JSON.
            value = repr(order) if variant % 2 else text[: len(text) // 2]
        elif kind == "schema_violation":
            v = variant % 4
            if v == 0:
                value = {**order, "revenue": "-120.00" if m is _money_text else -120.0}
            elif v == 1:
                c.n_tickets += 1
                topic, value = (
                    "support-tickets",
                    {
                        **base,
                        "occurred_at": ts,
                        "ticket_id": f"{c.id}-t{c.n_tickets}",
                        "channel": "fax",
                        "handling_minutes": 12,
                    },
                )
            elif v == 2:
                value = {**order, "occurred_at": ts[:-1]}  # naive: no offset
            else:
                del order["cost_of_goods"]
                value = order
        elif kind == "unknown_currency":
            value = {**order, "currency": "XYZ"}
        elif kind == "self_referral":
            topic, value = "referrals", {**base, "occurred_at": ts, "referred_customer_id": c.id}
        elif kind == "not_overdue":
            c.n_invoices += 1
            topic, value = (
                "invoice-overdue",
                {
                    **base,
                    "occurred_at": ts,
                    "currency": c.currency,
                    "invoice_id": f"{c.id}-i{c.n_invoices}",
                    "status": "overdue",
                    "amount_due": m(250.0 * c.fx),
                    "due_date": self.day_text(t // DAY + variant % 15),
                },
            )
        else:  # future_timestamp: an otherwise valid record dated in 2099 (not a leap year)
            future = "2099" + (ts[4:] if ts[5:10] != "02-29" else "-03-01" + ts[10:])
            c.n_activities += 1
            topic, value = (
                "sales-activities",
                {
                    **base,
                    "occurred_at": future,
                    "currency": c.currency,
                    "activity_id": f"{c.id}-s{c.n_activities}",
                    "kind": "call",
                    "cost": m(30.0 * c.fx),
                },
            )
        return None, (topic, value), label

    # ---- the run -------------------------------------------------------------------

    @overload
    def run(self, as_lines: Literal[False]) -> Iterator[Record]: ...
    @overload
    def run(self, as_lines: Literal[True]) -> Iterator[str]: ...

    def run(self, as_lines: bool) -> Iterator[Record] | Iterator[str]:
        """The records in stream order, jittered; as replay lines if `as_lines`."""
        timed = self._timed(as_lines)
        if not self.cfg.jitter:
            return (out for _, _, out in timed)
        return _jittered(timed, self.cfg.jitter, random.Random(f"jitter:{self.cfg.seed}"))

    def _timed(self, as_lines: bool) -> Iterator[tuple[int, str, Any]]:
        """(time, topic, record) in event-time order; the record as a replay line right
        away if `as_lines` (rendering here saves a generator layer per record)."""
        rnd, put, dumps = self.rnd, self.put, json.dumps
        positions = self.bad_positions()
        next_bad = next(positions, 0)
        # Which originals get redelivered: geometric gaps between them rather than a
        # draw per record. A gap of -1 never counts down to 0: no redeliveries.
        dup_log = log(1.0 - self.dup_rate) if 0 < self.dup_rate < 1 else 0.0

        def dup_gap() -> int:
            if not dup_log:
                return 1 if self.dup_rate >= 1 else -1
            return 1 + int(log(1.0 - rnd()) / dup_log)

        next_dup = dup_gap()
        by_id = {c.id: c for c in self.customers}
        n = k = 0
        slots = self.slots
        for i, heap in enumerate(slots):
            if not heap:
                continue
            slots[i] = []
            heapify(heap)
            self.slot, self.current = i, heap
            while heap:
                t, _, action, arg = heappop(heap)
                rec = action(t, arg)
                if rec is None:
                    continue
                if rec[2] is _APPLIED:
                    next_dup -= 1
                    if not next_dup:
                        # Redelivered a little later, as by a producer retrying after a
                        # lost ack.
                        put(t + 30 + int(rnd() * 2 * HOUR), _redeliver, rec)
                        next_dup = dup_gap()
                shape = rec[0]
                yield t, shape.topic, shape.template % rec[1] if as_lines else rec  # type: ignore[union-attr]
                n += 1
                if n == next_bad:
                    # Charged to the customer of the record before, as a broken producer
                    # would; every simulated record starts with event and customer id.
                    bad = self.bad_record(k, t, by_id[rec[1][1]])
                    topic, value = bad[1]
                    yield t, topic, dumps({"topic": topic, "value": value}) if as_lines else bad
                    k += 1
                    next_bad = next(positions, 0)


def _jittered(timed: Iterator[tuple[int, str, Any]], p: float, rng: random.Random) -> Iterator[Any]:
    """Swap neighbours of different topics less than a day apart with probability `p`
    (as upstream systems publishing with delays do). A record swapped once goes out
    with its pair, so it moves at most one place. Its own generator, so the records
    themselves do not depend on the jitter."""
    rnd = rng.random
    held: tuple[int, str, Any] | None = None
    for rec in timed:
        if held is None:
            held = rec
        elif rec[1] != held[1] and rec[0] - held[0] < DAY and rnd() < p:
            yield rec[2]
            yield held[2]
            held = None
        else:
            yield held[2]
            held = rec
    if held is not None:
        yield held[2]


def _redeliver(t: int, original: Record) -> Record:
    return original[0], original[1], "duplicate"


_UPKEEP_EDGES: Final = _weighted(_UPKEEP_WEIGHTS)
_CAMPAIGN_EDGES: Final = _weighted(_CAMPAIGN_WEIGHTS)


def _as_record(rec: Record) -> tuple[str, Value]:
    shape, data, _ = rec
    if shape is None:
        return data  # type: ignore[no-any-return]
    return shape.topic, shape.value(data)


def generate_labelled(cfg: GeneratorConfig) -> Iterator[tuple[str, Value, str]]:
    """(topic, value, label) in stream order. The label says what the engine must do
    with the record: `applied`, `duplicate`, `stale`, or `rejected:<DLQ code>`.
    For tests and benchmarks that check the engine against the generator's intent."""
    for rec in _Simulation(cfg).run(as_lines=False):
        yield (*_as_record(rec), rec[2])


def generate_records(cfg: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """Replay records `{"topic", "value"}` in stream order; `value` is an event
    object, or a string for records that are not JSON at all."""
    for shape, data, _ in _Simulation(cfg).run(as_lines=False):
        if shape is None:
            topic, value = data
            yield {"topic": topic, "value": value}
        else:
            yield {"topic": shape.topic, "value": shape.value(data)}


def generate_lines(cfg: GeneratorConfig) -> Iterator[str]:
    """The replay file (spec section 9): `json.dumps` of each record, one per line
    (without the newline)."""
    return _Simulation(cfg).run(as_lines=True)
