"""Status rules (spec section 5): grace, a loss that must persist, hysteresis.

Pure functions of the figures; no I/O, no clock. Ratios are compared by
multiplication (`N >= x * R` for `N / R >= x`, with `R > 0`) so no division
rounding can tip a customer across a band edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from models.settings import Settings
from models.timeutil import US_PER_DAY

Status = Literal["new", "profitable", "at_risk", "unprofitable"]
AlertKind = Literal["became_unprofitable", "at_risk", "recovered"]
Severity = Literal["critical", "warning", "info"]

SEVERITY: dict[AlertKind, Severity] = {
    "became_unprofitable": "critical",
    "at_risk": "warning",
    "recovered": "info",
}


@dataclass(frozen=True, slots=True)
class StatusRules:
    grace_us: int
    confirm_us: int
    unprofitable_below: Decimal
    recovery_margin: Decimal
    at_risk_margin_ratio: Decimal
    at_risk_exit_ratio: Decimal

    @classmethod
    def from_settings(cls, s: Settings) -> StatusRules:
        return cls(
            grace_us=s.grace_days * US_PER_DAY,
            confirm_us=s.confirm_days * US_PER_DAY,
            unprofitable_below=s.unprofitable_below,
            recovery_margin=s.recovery_margin,
            at_risk_margin_ratio=s.at_risk_margin_ratio,
            at_risk_exit_ratio=s.at_risk_exit_ratio,
        )


def decide(
    current: str,
    below_since: int | None,
    as_of: int,
    first_seen: int,
    net: Decimal,
    revenue: Decimal,
    rules: StatusRules,
) -> tuple[Status, int | None]:
    """The status at `as_of` and the new `below_since` (start of the loss streak)."""
    # 1. Grace: a new customer is not judged, and no loss streak runs yet.
    if as_of - first_seen < rules.grace_us:
        return "new", None
    if current == "new":
        current = "profitable"

    # 2. Unprofitable customers recover only when clearly healthy.
    if current == "unprofitable":
        if net >= rules.recovery_margin and (
            revenue <= 0 or net >= rules.at_risk_exit_ratio * revenue
        ):
            return "profitable", None
        return "unprofitable", below_since

    # 3. A loss must persist for confirm_days before it is called unprofitable.
    if net < rules.unprofitable_below:
        if below_since is None:
            below_since = as_of
        if as_of - below_since >= rules.confirm_us:
            return "unprofitable", below_since
        return "at_risk", below_since  # rule 4 with N below the threshold

    # 4. Margin band, with a wider exit than entry.
    if revenue <= 0:
        return "profitable", None
    if current == "at_risk":
        ok = net >= rules.at_risk_exit_ratio * revenue
    else:
        ok = net >= rules.at_risk_margin_ratio * revenue
    return ("profitable" if ok else "at_risk"), None


def alert_kind(previous: str, new: str) -> AlertKind | None:
    """Which transitions are alerted; the others only show in the snapshot."""
    if new == previous:
        return None
    if new == "unprofitable":
        return "became_unprofitable"
    if new == "at_risk" and previous in ("profitable", "new"):
        return "at_risk"
    if new == "profitable" and previous == "unprofitable":
        return "recovered"
    return None
