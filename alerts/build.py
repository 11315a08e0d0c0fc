"""What an alert says: drivers, the summary sentence, the deterministic alert id."""

from __future__ import annotations

import uuid
from decimal import Decimal

from alerts.status import SEVERITY, AlertKind
from models.ledger import COMPONENTS, COST_INDEXES, REF, net_profit
from models.money import ZERO, money_str, share
from models.outputs import Alert, Driver, Figures

MAX_DRIVERS = 3


def alert_id(customer_id: str, n: int) -> str:
    """The n-th alert (from 1) of a customer: the same history gives the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"profitwatch:{customer_id}:{n}"))


def drivers(trailing: list[Decimal]) -> list[Driver]:
    """The largest positive trailing costs, with their share of all positive costs."""
    positive = [(trailing[i], i) for i in COST_INDEXES if trailing[i] > 0]
    total = sum((amount for amount, _ in positive), ZERO)
    # Largest first; equal amounts keep the components' contract order.
    positive.sort(key=lambda p: (-p[0], p[1]))
    return [
        Driver(component=COMPONENTS[i], amount=money_str(a), share=share(a, total))
        for a, i in positive[:MAX_DRIVERS]
    ]


def revenue_change(trailing_revenue: Decimal, previous_revenue: Decimal) -> float | None:
    if previous_revenue <= 0:
        return None
    return float((trailing_revenue - previous_revenue) / previous_revenue)


MINUS = "\u2212"  # a real minus sign: the summary is for people


def _signed(amount: Decimal) -> str:
    text = money_str(amount)
    return MINUS + text[1:] if text.startswith("-") else text


_HEADLINE: dict[AlertKind, str] = {
    "became_unprofitable": "became unprofitable",
    "at_risk": "is at risk",
    "recovered": "recovered",
}


def summary(
    customer_id: str,
    kind: AlertKind,
    trailing: list[Decimal],
    change: float | None,
    top: list[Driver],
    window_days: int,
    currency: str,
) -> str:
    parts = [f"net {_signed(net_profit(trailing))} {currency} over {window_days} days"]
    if top:
        name = top[0].component.replace("_", " ")
        parts.append(f"{name} costs are {round(top[0].share * 100)}% of costs")
    if change is None:
        parts.append(f"no revenue in the previous {window_days} days to compare")
    else:
        pct = round(change * 100)
        sign = "+" if pct > 0 else (MINUS if pct < 0 else "")
        parts.append(f"revenue {sign}{abs(pct)}% vs the previous {window_days} days")
    if trailing[REF] > 0:
        parts.append(f"referrals brought {money_str(trailing[REF])} {currency}")
    return f"Customer {customer_id} {_HEADLINE[kind]}: " + "; ".join(parts) + "."


def build_alert(
    *,
    customer_id: str,
    n: int,
    kind: AlertKind,
    status: str,
    previous_status: str,
    as_of: str,
    trigger_event_id: str | None,
    window_days: int,
    trailing: list[Decimal],
    lifetime: list[Decimal],
    previous_revenue: Decimal,
    currency: str,
) -> Alert:
    change = revenue_change(trailing[0], previous_revenue)
    top = drivers(trailing)
    return Alert(
        alert_id=alert_id(customer_id, n),
        customer_id=customer_id,
        kind=kind,
        severity=SEVERITY[kind],
        status=status,
        previous_status=previous_status,
        as_of=as_of,
        trigger_event_id=trigger_event_id,
        window_days=window_days,
        trailing=Figures.of(trailing),
        lifetime=Figures.of(lifetime),
        revenue_change=change,
        drivers=top,
        referral_value_at_stake=money_str(trailing[REF]),
        summary=summary(customer_id, kind, trailing, change, top, window_days, currency),
    )
