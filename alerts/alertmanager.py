"""Prometheus Alertmanager (v2 API, `POST /api/v2/alerts`) for `profitwatch notify
alertmanager`: what each customer's Alertmanager alert is, and what must be POSTed so
that Alertmanager shows exactly the customers that are `at_risk` or `unprofitable`.
Pure: no Kafka, no HTTP (streams/notify_alertmanager.py does those).

One alert per customer in one of those statuses:

- labels `alertname` (`CustomerUnprofitable` / `CustomerAtRisk`), `customer_id` and
  `severity` (`critical` / `warning`): the identity Alertmanager groups and routes by;
- annotations `summary` and `drivers` from the customer's latest alert (contract 6.3),
  or, when that alert is not known (the notifier restarted after it was committed),
  the same sentence made of the snapshot's figures; `trailing_net_profit`,
  `referral_value_at_stake` and `as_of` from the latest snapshot (contract 6.2);
- `generatorURL`: the customer's page on the worker's dashboard;
- `startsAt`: the `as_of` of the alert that began the status (else of the snapshot),
  never later than now; `endsAt`: now + a few re-send intervals (the caller's
  `valid_for`), so it stays firing while re-sent and resolves by itself once the
  notifier is gone for good, as Prometheus does (4 evaluation intervals).

The status comes from the snapshots topic alone: it holds every change (an alert is
only sent for some, section 5) and, compacted, the latest state of every customer.

`Book` keeps, per customer, the latest snapshot's view, the latest alert's words and
what was last delivered to Alertmanager; `Book.plan` says what to POST: the firing
alert of every customer whose alertname changed, a resolution (`endsAt` = now) of the
alertname it had (both of them when that is unknown), and on a full re-send every
firing alert. `Book.settle` records a plan as delivered.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import quote

from pydantic import ConfigDict

from alerts.build import MINUS
from alerts.build import drivers as cost_drivers
from models.ledger import COMPONENTS
from models.outputs import Alert, Driver, Snapshot

__all__ = [
    "ALERTNAMES",
    "API_PATH",
    "SEVERITIES",
    "UNKNOWN",
    "AmAlert",
    "Book",
    "Cause",
    "Delivered",
    "Plan",
    "View",
    "alertname_of",
    "bare_resolution",
    "customer_page",
    "decode_alert",
    "decode_snapshot",
    "drivers_text",
    "resolutions",
    "rfc3339",
    "wanted_alert",
]

API_PATH = "/api/v2/alerts"
ALERTNAMES: Final[dict[str, str]] = {
    "unprofitable": "CustomerUnprofitable",
    "at_risk": "CustomerAtRisk",
}
SEVERITIES: Final[dict[str, str]] = {
    "CustomerUnprofitable": "critical",
    "CustomerAtRisk": "warning",
}
_HEADLINE: Final[dict[str, str]] = {"unprofitable": "is unprofitable", "at_risk": "is at risk"}


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = _Unknown.UNKNOWN


def alertname_of(status: str) -> str | None:
    """The alertname of a status; None for `new` and `profitable`."""
    return ALERTNAMES.get(status)


def rfc3339(at: datetime) -> str:
    """`2026-04-20T10:00:00.000+00:00`: what Alertmanager parses (RFC 3339)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def customer_page(dashboard_url: str, customer_id: str) -> str:
    """The dashboard's page of one customer (streams/static/dashboard.html routes
    `#/customers/<encodeURIComponent(id)>`)."""
    # quote() leaves letters, digits and `_.-~` as they are; encodeURIComponent also `!*'()`
    page = quote(customer_id, safe="!*'()")
    return f"{dashboard_url.rstrip('/')}/#/customers/{page}"


# --- decoding: tolerant of fields a later service adds at the top level ---


class _Snapshot(Snapshot):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Alert(Alert):
    model_config = ConfigDict(frozen=True, extra="ignore")


def decode_snapshot(value: bytes) -> Snapshot:
    """A snapshot record's value; raises `ValueError` for one that is not a snapshot."""
    return _Snapshot.model_validate_json(value)


def decode_alert(value: bytes) -> Alert:
    """An alert record's value; raises `ValueError` for one that is not an alert."""
    return _Alert.model_validate_json(value)


# --- the words ---


def _signed(money: str) -> str:
    return MINUS + money[1:] if money.startswith("-") else money


def _percent(share: float) -> int:
    return round(share * 100)


def drivers_text(drivers: Sequence[Driver], currency: str) -> str:
    """`support 412.30 EUR (61%), cost of goods 200.00 EUR (30%)`: contract 6.3's
    drivers for people."""
    if not drivers:
        return "no costs in the window"
    return ", ".join(
        f"{d.component.replace('_', ' ')} {d.amount} {currency} ({_percent(d.share)}%)"
        for d in drivers
    )


def _snapshot_summary(s: Snapshot, top: Sequence[Driver], currency: str) -> str:
    """The summary sentence of contract 6.3, of the snapshot's figures: for a customer
    whose alert is not known."""
    days = s.window_days
    parts = [f"net {_signed(s.trailing.net_profit)} {currency} over {days} days"]
    if top:
        name = top[0].component.replace("_", " ")
        parts.append(f"{name} costs are {_percent(top[0].share)}% of costs")
    if s.revenue_change is None:
        parts.append(f"no revenue in the previous {days} days to compare")
    else:
        pct = round(s.revenue_change * 100)
        sign = "+" if pct > 0 else (MINUS if pct < 0 else "")
        parts.append(f"revenue {sign}{abs(pct)}% vs the previous {days} days")
    if Decimal(s.trailing.referral_value) > 0:
        parts.append(f"referrals brought {s.trailing.referral_value} {currency}")
    return f"Customer {s.customer_id} {_HEADLINE[s.status]}: " + "; ".join(parts) + "."


@dataclass(frozen=True, slots=True)
class View:
    """What the annotations take from a snapshot of a customer in a firing status."""

    status: str
    alertname: str
    as_of: datetime
    as_of_text: str
    trailing_net_profit: str
    referral_value_at_stake: str
    summary: str  # when the customer's alert is not known
    drivers: str

    @classmethod
    def of(cls, s: Snapshot, currency: str) -> View | None:
        """None for a status that fires nothing."""
        name = alertname_of(s.status)
        if name is None:
            return None
        trailing = [Decimal(getattr(s.trailing, c)) for c in COMPONENTS]
        top = cost_drivers(trailing)
        return cls(
            status=s.status,
            alertname=name,
            as_of=_time(s.as_of),
            as_of_text=s.as_of,
            trailing_net_profit=f"{s.trailing.net_profit} {currency}",
            referral_value_at_stake=f"{s.trailing.referral_value} {currency}",
            summary=_snapshot_summary(s, top, currency),
            drivers=drivers_text(top, currency),
        )


@dataclass(frozen=True, slots=True)
class Cause:
    """What the customer's latest alert says."""

    status: str
    as_of: datetime
    summary: str
    drivers: str

    @classmethod
    def of(cls, alert: Alert, currency: str) -> Cause:
        return cls(
            status=alert.status,
            as_of=_time(alert.as_of),
            summary=alert.summary,
            drivers=drivers_text(alert.drivers, currency),
        )


@dataclass(frozen=True, slots=True)
class AmAlert:
    """One customer's Alertmanager alert while it fires."""

    customer_id: str
    alertname: str
    annotations: tuple[tuple[str, str], ...]
    starts_at: datetime
    generator_url: str

    @property
    def labels(self) -> dict[str, str]:
        return _labels(self.customer_id, self.alertname)

    def firing(self, ends_at: datetime) -> dict[str, Any]:
        """The JSON of a POST that keeps it firing until `ends_at`."""
        return {
            "labels": self.labels,
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(ends_at),
            "generatorURL": self.generator_url,
        }

    def resolved(self, at: datetime) -> dict[str, Any]:
        """The JSON of a POST that resolves it at `at` (now): the annotations it fired
        with, so that a receiver's "resolved" message says what it was about."""
        return self.firing(at) | {"startsAt": rfc3339(min(self.starts_at, at))}


# What Alertmanager was last given for a customer: its firing alert, nothing (None),
# or not known (after a restart, a change the previous run may not have delivered).
Delivered: TypeAlias = AmAlert | Literal[_Unknown.UNKNOWN] | None


def _labels(customer_id: str, alertname: str) -> dict[str, str]:
    return {"alertname": alertname, "customer_id": customer_id, "severity": SEVERITIES[alertname]}


def bare_resolution(customer_id: str, alertname: str, at: datetime) -> dict[str, Any]:
    """Resolves `alertname` of a customer whose last alert is not known: the labels
    alone (Alertmanager then takes `startsAt` = `endsAt`; one it does not have is
    stored resolved, and notifies nobody)."""
    return {"labels": _labels(customer_id, alertname), "endsAt": rfc3339(at)}


def resolutions(delivered: Delivered, wanted: str | None) -> list[str]:
    """The alertnames to resolve when the customer's alertname becomes `wanted` (None:
    none fires) after `delivered`: the one it had, if another; both but `wanted` when
    what was delivered is not known."""
    if delivered is UNKNOWN:
        return [name for name in ALERTNAMES.values() if name != wanted]
    if isinstance(delivered, AmAlert) and delivered.alertname != wanted:
        return [delivered.alertname]
    return []


def wanted_alert(
    customer_id: str,
    view: View,
    cause: Cause | None,
    *,
    dashboard_url: str,
    now: datetime,
) -> AmAlert:
    """The Alertmanager alert a customer in a firing status should have: the latest
    alert's words when it is about this status, else the snapshot's."""
    if cause is not None and cause.status != view.status:
        cause = None
    annotations = (
        ("summary", view.summary if cause is None else cause.summary),
        ("drivers", view.drivers if cause is None else cause.drivers),
        ("trailing_net_profit", view.trailing_net_profit),
        ("referral_value_at_stake", view.referral_value_at_stake),
        ("as_of", view.as_of_text),
    )
    began = view.as_of if cause is None else cause.as_of
    return AmAlert(
        customer_id=customer_id,
        alertname=view.alertname,
        annotations=annotations,
        starts_at=min(began, now),  # as_of may be a little ahead (max_future_skew)
        generator_url=customer_page(dashboard_url, customer_id),
    )


# --- the book: what Alertmanager should show, and what it was given ---


@dataclass(slots=True)
class _Customer:
    partition: int
    view: View | None = None
    cause: Cause | None = None
    delivered: Delivered = None
    known: bool = False  # a snapshot seen: `delivered` means something


@dataclass(frozen=True)
class Plan:
    """What to POST, in order, and what Alertmanager has once it is delivered."""

    alerts: list[dict[str, Any]]
    settles: dict[str, AmAlert | None]  # customer -> its alert as delivered
    changed: list[str]  # customers whose alertname changed (or was not known)
    firing: int
    resolved: int

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(self.alerts), size):
            yield self.alerts[i : i + size]


class Book:
    """Per customer of the partitions the notifier owns: the latest snapshot's view,
    the latest alert's words, and what Alertmanager was last given."""

    def __init__(self, *, currency: str, dashboard_url: str) -> None:
        self.currency = currency
        self.dashboard_url = dashboard_url
        self._customers: dict[str, _Customer] = {}
        self._dirty: dict[str, None] = {}  # an ordered set

    def __len__(self) -> int:
        return len(self._customers)

    @property
    def changes(self) -> int:
        """Customers whose alert Alertmanager does not have as it should."""
        return len(self._dirty)

    def firing_names(self) -> dict[str, str]:
        """customer -> the alertname it should have (the customers in a firing status)."""
        return {c: e.view.alertname for c, e in self._customers.items() if e.view is not None}

    def _entry(self, customer_id: str, partition: int) -> _Customer:
        e = self._customers.get(customer_id)
        if e is None:
            e = self._customers[customer_id] = _Customer(partition)
        e.partition = partition
        return e

    def on_snapshot(
        self,
        customer_id: str,
        partition: int,
        snapshot: Snapshot | None,
        *,
        settled: bool,
        unseen: Delivered = None,
        now: datetime | None = None,
    ) -> None:
        """The customer's latest snapshot (None: a tombstone, the customer is gone).

        `settled`: a record below the group's committed offset, so what it says was
        delivered before. Otherwise it is a change to deliver, from what Alertmanager
        has: what this book delivered, or, for a customer it has not seen, `unseen`
        (UNKNOWN while re-reading a partition the group committed before)."""
        e = self._entry(customer_id, partition)
        if snapshot is None:
            e.view = e.cause = None
        else:
            e.view = View.of(snapshot, self.currency)
            if (
                e.cause is not None
                and e.cause.as_of < _time(snapshot.as_of)
                and e.cause.status != snapshot.status
            ):
                # The status it was about is over. Not on a tie: of an alert and a
                # snapshot of one as_of, either can be the later (records of one time).
                e.cause = None
        if settled:
            e.delivered = self._wanted(customer_id, e, now or datetime.now(UTC))
            e.known = True
            self._dirty.pop(customer_id, None)
            return
        if not e.known:
            e.delivered, e.known = unseen, True
        self._mark(customer_id, e)

    def on_alert(self, alert: Alert, partition: int) -> None:
        """The customer's latest alert: its words annotate the customer's alert."""
        e = self._entry(alert.customer_id, partition)
        cause = Cause.of(alert, self.currency)
        if e.cause is not None and cause.as_of < e.cause.as_of:
            return  # an older alert sent again (a redelivery after a crash)
        e.cause = cause if alertname_of(cause.status) is not None else None

    def _mark(self, customer_id: str, e: _Customer) -> None:
        wanted = None if e.view is None else e.view.alertname
        had = e.delivered
        if had is UNKNOWN or (had.alertname if isinstance(had, AmAlert) else None) != wanted:
            self._dirty[customer_id] = None
        else:
            self._dirty.pop(customer_id, None)

    def _wanted(self, customer_id: str, e: _Customer, now: datetime) -> AmAlert | None:
        if e.view is None:
            return None
        return wanted_alert(customer_id, e.view, e.cause, dashboard_url=self.dashboard_url, now=now)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget the customers of partitions no longer owned; how many."""
        gone = set(partitions)
        drop = [c for c, e in self._customers.items() if e.partition in gone]
        for c in drop:
            del self._customers[c]
            self._dirty.pop(c, None)
        return len(drop)

    def prune(self) -> int:
        """Forget customers with nothing to say: no firing status, no alert's words,
        nothing in Alertmanager. Only once every partition is read: a customer seen is
        then known to have nothing in Alertmanager when it comes back."""
        idle = [
            c
            for c, e in self._customers.items()
            if e.view is None and e.cause is None and e.delivered is None and c not in self._dirty
        ]
        for c in idle:
            del self._customers[c]
        return len(idle)

    def plan(self, now: datetime, *, full: bool, valid_for: timedelta) -> Plan:
        """What to POST: every change (the new alert firing, the old one resolved);
        with `full`, every firing alert too (the periodic re-send)."""
        ends_at = now + valid_for
        alerts: list[dict[str, Any]] = []
        settles: dict[str, AmAlert | None] = {}
        firing = resolved = 0
        for cid in self._dirty:
            e = self._customers[cid]
            want = self._wanted(cid, e, now)
            for name in resolutions(e.delivered, None if want is None else want.alertname):
                had = e.delivered
                if isinstance(had, AmAlert) and had.alertname == name:
                    alerts.append(had.resolved(now))
                else:
                    alerts.append(bare_resolution(cid, name, now))
                resolved += 1
            if want is not None:
                alerts.append(want.firing(ends_at))
                firing += 1
            settles[cid] = want
        changed = list(settles)
        if full:
            for cid, e in self._customers.items():
                if e.view is None or cid in settles:
                    continue
                want = self._wanted(cid, e, now)
                assert want is not None
                alerts.append(want.firing(ends_at))
                settles[cid] = want
                firing += 1
        return Plan(alerts, settles, changed, firing, resolved)

    def settle(self, plan: Plan) -> None:
        """`plan` was delivered (nothing changed in the book since it was made)."""
        for cid, alert in plan.settles.items():
            e = self._customers.get(cid)
            if e is not None:
                e.delivered = alert
        for cid in plan.changed:
            self._dirty.pop(cid, None)
