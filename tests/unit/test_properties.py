"""Properties of the engine over arbitrary valid streams (hypothesis)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import codec
from models.ledger import N_COMPONENTS, REF, REV, direct_profit, net_profit
from models.replay import OutputRecord, Replayer
from models.settings import Settings

BASE = datetime(2025, 1, 1, tzinfo=UTC)
CUSTOMERS = ("a", "b", "c")
SETTINGS = Settings()
money = st.decimals(min_value=0, max_value=5000, places=2).map(str)


def ts(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@st.composite
def event(draw: st.DrawFn, n: int) -> tuple[str, dict[str, Any]]:
    cid = draw(st.sampled_from(CUSTOMERS))
    # within 150 days, so no remembered id ages out (ids live for 2 x 90 days)
    base = {
        "event_id": f"e{n}",
        "customer_id": cid,
        "occurred_at": ts(draw(st.integers(0, 150 * 1440))),
    }
    kind = draw(st.sampled_from(["order", "order", "ticket", "invoice", "referral", "sales"]))
    if kind == "order":
        return "orders", base | {
            "currency": draw(st.sampled_from(["EUR", "USD", "CHF"])),
            "order_id": f"o{n}",
            "kind": draw(st.sampled_from(["placed", "placed", "returned"])),
            "revenue": draw(money),
            "cost_of_goods": draw(money),
            "commission": draw(money),
            "fulfillment_cost": draw(money),
        }
    if kind == "ticket":
        return "support-tickets", base | {
            "ticket_id": f"t{draw(st.integers(0, 3))}",
            "channel": draw(st.sampled_from(["phone", "email", "chat", "onsite", "self_service"])),
            "handling_minutes": draw(st.integers(0, 600)),
            "escalated": draw(st.booleans()),
        }
    if kind == "invoice":
        due = (BASE + timedelta(days=draw(st.integers(-60, 140)))).date().isoformat()
        status = draw(st.sampled_from(["overdue", "paid", "written_off"]))
        return "invoice-overdue", base | {
            "currency": "EUR",
            "invoice_id": f"i{draw(st.integers(0, 3))}",
            "status": status,
            "amount_due": draw(money.filter(lambda m: Decimal(m) > 0)),
            "due_date": due,
        }
    if kind == "referral":
        other = draw(st.sampled_from([c for c in CUSTOMERS if c != cid]))
        return "referrals", base | {"referred_customer_id": other}
    return "sales-activities", base | {
        "currency": "GBP",
        "activity_id": f"s{n}",
        "cost": draw(money),
    }


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    size = draw(st.integers(1, 60))
    return [draw(event(i)) for i in range(size)]


def feed_all(r: Replayer, records: list[tuple[str, dict[str, Any]]]) -> list[OutputRecord]:
    out: list[OutputRecord] = []
    for topic, value in records:
        out.extend(o for o in r.feed(topic, value) if o.topic != "profitability-dlq")
    return out


def final(r: Replayer) -> list[OutputRecord]:
    return r.snapshots()


PROPS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPS
@given(streams(), st.data())
def test_redelivering_any_subset_changes_nothing(records: list[Any], data: st.DataObject) -> None:
    clean = Replayer(SETTINGS)
    clean_out = feed_all(clean, records)
    redelivered = list(records)
    for i in data.draw(st.lists(st.integers(0, len(records) - 1), max_size=len(records))):
        # a redelivery comes after the original, anywhere later in the stream
        pos = data.draw(st.integers(redelivered.index(records[i]) + 1, len(redelivered)))
        redelivered.insert(pos, records[i])
    noisy = Replayer(SETTINGS)
    assert feed_all(noisy, redelivered) == clean_out
    assert final(noisy) == final(clean)


@PROPS
@given(streams())
def test_figures_are_consistent(records: list[Any]) -> None:
    r = Replayer(SETTINGS)
    feed_all(r, records)
    for s in r.states.values():
        for v in (s.trailing, s.lifetime):
            assert net_profit(v) == direct_profit(v) + v[REF]
        assert s.day is not None or not s.buckets
        if s.day is not None:
            fresh = [
                sum((b[i] for d, b in s.buckets.items() if d > s.day - 90), Decimal(0))
                for i in range(N_COMPONENTS)
            ]
            assert all(
                abs(x - y) < Decimal("1e-18") for x, y in zip(s.trailing, fresh, strict=True)
            )
            prev = sum(
                (b[REV] for d, b in s.buckets.items() if s.day - 180 < d <= s.day - 90), Decimal(0)
            )
            assert s.prev_revenue == prev
    # lifetime revenue is the converted sum of distinct placed minus returned orders
    expected: dict[str, Decimal] = {}
    seen: set[str] = set()
    for topic, v in records:
        if topic == "orders" and v["event_id"] not in seen:
            seen.add(v["event_id"])
            sign = 1 if v["kind"] == "placed" else -1
            amount = sign * Decimal(v["revenue"]) * SETTINGS.fx_rates[v["currency"]]
            expected[v["customer_id"]] = expected.get(v["customer_id"], Decimal(0)) + amount
    for cid, s in r.states.items():
        assert s.lifetime[REV] == expected.get(cid, Decimal(0))
    for snap in r.snapshots():
        t = snap.value["trailing"]
        assert abs(
            Decimal(t["net_profit"]) - Decimal(t["direct_profit"]) - Decimal(t["referral_value"])
        ) <= Decimal("0.01")


@PROPS
@given(streams(), st.data())
def test_state_survives_a_round_trip_mid_stream(records: list[Any], data: st.DataObject) -> None:
    straight = Replayer(SETTINGS)
    straight_out = feed_all(straight, records)
    cut = data.draw(st.integers(0, len(records)))
    resumed = Replayer(SETTINGS)
    out = feed_all(resumed, records[:cut])
    resumed.states = {cid: codec.loads(codec.dumps(s)) for cid, s in resumed.states.items()}
    out += feed_all(resumed, records[cut:])
    assert out == straight_out
    assert final(resumed) == final(straight)
    for cid, s in straight.states.items():
        assert resumed.states[cid] == s


@PROPS
@given(streams())
def test_replay_is_deterministic(records: list[Any]) -> None:
    one, two = Replayer(SETTINGS), Replayer(SETTINGS)
    assert feed_all(one, records) == feed_all(two, records)
    assert final(one) == final(two)
