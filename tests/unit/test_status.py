"""Section 5: grace, confirmation, hysteresis, and which transitions alert."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from alerts.status import StatusRules, alert_kind, decide
from models.settings import Settings
from models.timeutil import US_PER_DAY
from tests.builders import alerts, order, run, sales

RULES = StatusRules.from_settings(Settings())
DAY = US_PER_DAY
T0 = 1_000 * DAY  # first_seen


def at(days: float) -> int:
    return T0 + int(days * DAY)


def test_grace_is_new_and_starts_no_streak() -> None:
    assert decide("new", None, at(29.99), T0, D(-500), D(0), RULES) == ("new", None)


def test_leaving_grace_is_judged_as_profitable() -> None:
    assert decide("new", None, at(30), T0, D(100), D(1000), RULES) == ("profitable", None)
    # 4 % margin: from profitable that is below the 5 % entry band
    assert decide("new", None, at(30), T0, D(40), D(1000), RULES) == ("at_risk", None)


def test_loss_is_at_risk_until_confirmed() -> None:
    status, since = decide("profitable", None, at(40), T0, D(-1), D(100), RULES)
    assert (status, since) == ("at_risk", at(40))
    assert decide("at_risk", since, at(46.99), T0, D(-1), D(100), RULES) == ("at_risk", since)
    assert decide("at_risk", since, at(47), T0, D(-1), D(100), RULES) == ("unprofitable", since)


def test_an_evaluation_at_or_above_the_threshold_ends_the_streak() -> None:
    status, since = decide("at_risk", at(40), at(45), T0, D(0), D(100), RULES)
    assert since is None and status == "at_risk"  # 0 % margin is still in the band


def test_band_hysteresis() -> None:
    # entering at_risk below 5 %, leaving only at 8 %
    assert decide("profitable", None, at(40), T0, D(49), D(1000), RULES)[0] == "at_risk"
    assert decide("profitable", None, at(40), T0, D(50), D(1000), RULES)[0] == "profitable"
    assert decide("at_risk", None, at(40), T0, D(79), D(1000), RULES)[0] == "at_risk"
    assert decide("at_risk", None, at(40), T0, D(80), D(1000), RULES)[0] == "profitable"


def test_no_revenue_and_no_loss_is_profitable() -> None:
    assert decide("at_risk", None, at(40), T0, D(0), D(0), RULES)[0] == "profitable"
    assert decide("at_risk", None, at(40), T0, D(10), D(-5), RULES)[0] == "profitable"


@pytest.mark.parametrize(
    ("net", "revenue", "expected"),
    [
        (D(49), D(0), "unprofitable"),  # below the recovery margin
        (D(50), D(0), "profitable"),  # no revenue: the margin alone decides
        (D(60), D(1000), "unprofitable"),  # 6 % < the 8 % exit ratio
        (D(80), D(1000), "profitable"),
    ],
)
def test_unprofitable_recovers_only_when_clearly_healthy(net: D, revenue: D, expected: str) -> None:
    assert decide("unprofitable", at(10), at(60), T0, net, revenue, RULES)[0] == expected


@pytest.mark.parametrize(
    ("previous", "new", "kind"),
    [
        ("profitable", "unprofitable", "became_unprofitable"),
        ("at_risk", "unprofitable", "became_unprofitable"),
        ("new", "unprofitable", "became_unprofitable"),
        ("profitable", "at_risk", "at_risk"),
        ("new", "at_risk", "at_risk"),
        ("unprofitable", "profitable", "recovered"),
        ("at_risk", "profitable", None),
        ("new", "profitable", None),
        ("unprofitable", "at_risk", None),
        ("at_risk", "at_risk", None),
    ],
)
def test_alerted_transitions(previous: str, new: str, kind: str | None) -> None:
    assert alert_kind(previous, new) == kind


def test_zero_confirm_days_goes_straight_to_unprofitable() -> None:
    rules = StatusRules.from_settings(Settings(confirm_days=0))
    assert decide("profitable", None, at(40), T0, D(-1), D(0), rules)[0] == "unprofitable"


def test_alert_contents_end_to_end() -> None:
    _, out = run(
        [
            order("c", "2026-01-05", 1000, 900, commission=50),
            sales("c", "2026-02-10", 200),  # 36 days in: net -150 -> at_risk
            sales("c", "2026-02-18", 10),  # below for 8 days -> unprofitable
            order("c", "2026-02-20", 5000, 1000),  # net 3840 on 6000: 64 % -> recovered
        ]
    )
    got = alerts(out)
    assert [(a["kind"], a["severity"], a["previous_status"], a["status"]) for a in got] == [
        ("at_risk", "warning", "new", "at_risk"),
        ("became_unprofitable", "critical", "at_risk", "unprofitable"),
        ("recovered", "info", "unprofitable", "profitable"),
    ]
    a = got[1]
    # 900 + 210 + 50 = 1160 of positive costs
    assert a["drivers"] == [
        {"component": "cost_of_goods", "amount": "900.00", "share": 0.7759},
        {"component": "sales", "amount": "210.00", "share": 0.181},
        {"component": "commissions", "amount": "50.00", "share": 0.0431},
    ]
    assert a["trailing"]["net_profit"] == "-160.00"
    assert a["summary"] == (
        "Customer c became unprofitable: net \u2212160.00 EUR over 90 days; "
        "cost of goods costs are 78% of costs; no revenue in the previous 90 days to compare."
    )
