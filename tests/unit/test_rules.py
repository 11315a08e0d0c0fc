"""Sections 3–4 of the spec, one rule at a time, with hand-computed figures."""

from __future__ import annotations

from typing import Any

from models.replay import Replayer
from models.settings import Settings
from models.timeutil import to_us
from streams.cli import _timestamp
from tests.builders import alerts, invoice, order, referral, run, sales, ticket


def snap(r: Replayer, cid: str) -> dict[str, Any]:
    return r.model.snapshot(r.states[cid]).to_wire()


def life(r: Replayer, cid: str) -> dict[str, str]:
    return snap(r, cid)["lifetime"]  # type: ignore[no-any-return]


# ---- orders -----------------------------------------------------------------------


def test_placed_and_returned_orders() -> None:
    r, _ = run(
        [
            order("c", "2026-01-05", 1000, 600, commission=50, fulfillment=10),
            order("c", "2026-01-06", 200, 120, commission=10, fulfillment=15, kind="returned"),
        ]
    )
    f = life(r, "c")
    assert (f["revenue"], f["cost_of_goods"], f["commissions"], f["fulfillment"]) == (
        "800.00",
        "480.00",
        "40.00",
        "25.00",
    )  # a return's handling is a cost too
    assert f["direct_profit"] == f["net_profit"] == "255.00"


def test_money_is_converted_at_the_fx_rate_on_arrival() -> None:
    r, _ = run(
        [
            order("c", "2026-01-05", "100", "50.50", currency="USD"),
            sales("c", "2026-01-06", 10, currency="GBP"),
        ]
    )
    f = life(r, "c")
    assert (f["revenue"], f["cost_of_goods"], f["sales"]) == ("92.00", "46.46", "11.70")


# ---- support tickets ------------------------------------------------------------------


def test_ticket_minutes_are_cumulative_and_replace_the_previous_cost() -> None:
    r, _ = run(
        [
            ticket("c", "2026-01-20", "t1", "phone", 30),
            ticket("c", "2026-02-10", "t1", "phone", 90, escalated=True),
            ticket("c", "2026-02-11", "t2", "onsite", 30),
            ticket("c", "2026-02-12", "t3", "self_service", 500),
            ticket("c", "2026-02-13", "t4", "chat", 15),
        ]
    )
    # t1: 90/60*60 + 75 = 165; t2: 30/60*120 + 150 = 210; t3: 0; t4: 15/60*40 = 10
    assert life(r, "c")["support"] == "385.00"


def test_stale_ticket_update_changes_nothing() -> None:
    r, _out = run(
        [
            ticket("c", "2026-02-10", "t1", "phone", 90),
            ticket("c", "2026-02-09", "t1", "phone", 60),
        ]
    )
    assert r.outcomes == {"applied": 1, "stale": 1}
    s = snap(r, "c")
    assert s["lifetime"]["support"] == "90.00" and s["events_applied"] == 1
    assert s["last_event_at"] == "2026-02-10T10:00:00+00:00"


# ---- invoices ---------------------------------------------------------------------------


def test_overdue_provision_carrying_and_dunning() -> None:
    r, _ = run([invoice("c", "2026-03-01", "i1", 1000, "2026-02-15")])
    # 14 days: provision 2 % = 20, carrying 1000*0.08*14/365 = 3.0685, dunning 5
    s = snap(r, "c")
    assert s["lifetime"]["overdue"] == "28.07"
    assert s["open_invoices"] == {"count": 1, "amount_due": "1000.00", "provision": "20.00"}


def test_provision_bands() -> None:
    model = Replayer(Settings()).model
    assert [model.provision_rate(d) for d in (1, 30, 31, 60, 61, 90, 91, 180, 181, 999)] == [
        model.provision_rate(1)
    ] * 2 + [model.provision_rate(31)] * 2 + [model.provision_rate(61)] * 2 + [
        model.provision_rate(91)
    ] * 2 + [model.provision_rate(181)] * 2
    assert str(model.provision_rate(45)) == "0.10" and str(model.provision_rate(200)) == "0.80"


def test_paid_invoice_releases_provision_keeps_carrying_and_is_final() -> None:
    r, _ = run(
        [
            invoice("c", "2026-03-01", "i1", 1000, "2026-02-15"),  # 28.0685
            invoice("c", "2026-03-18", "i1", 1000, "2026-02-15", status="paid"),  # 31 days
            invoice("c", "2026-03-20", "i1", 1000, "2026-02-15"),  # after paid: stale
        ]
    )
    # paid: provision 0, carrying 1000*0.08*31/365 = 6.7945; + the one dunning fee = 11.79
    s = snap(r, "c")
    assert s["lifetime"]["overdue"] == "11.79"
    assert s["open_invoices"]["count"] == 0
    assert r.outcomes == {"applied": 2, "stale": 1}


def test_written_off_then_only_paid_applies() -> None:
    r, _ = run(
        [
            invoice("c", "2026-03-01", "i1", 1000, "2026-02-15"),
            invoice("c", "2026-04-20", "i1", 1000, "2026-02-15", status="written_off"),  # 64 days
            invoice("c", "2026-04-25", "i1", 1000, "2026-02-15"),  # stale after written_off
            invoice("c", "2026-04-26", "i1", 1000, "2026-02-15", status="written_off"),  # stale too
        ]
    )
    assert life(r, "c")["overdue"] == "1019.03"  # the worked example's figure
    assert r.outcomes == {"applied": 2, "stale": 2}
    r2, _ = run(
        [
            invoice("c", "2026-04-20", "i1", 1000, "2026-02-15", status="written_off"),
            invoice("c", "2026-05-10", "i1", 1000, "2026-02-15", status="paid"),  # 84 days
        ]
    )
    # recovered: provision 0, carrying 1000*0.08*84/365 = 18.41
    assert life(r2, "c")["overdue"] == "18.41" and r2.outcomes == {"applied": 2}


def test_paid_before_due_keeps_carrying_as_it_was() -> None:
    r, _ = run([invoice("c", "2026-03-01", "i1", 100, "2026-03-05", status="paid")])
    assert life(r, "c")["overdue"] == "0.00"


def test_earlier_invoice_event_is_stale() -> None:
    r, _ = run(
        [
            invoice("c", "2026-03-10", "i1", 100, "2026-02-15"),
            invoice("c", "2026-03-01", "i1", 100, "2026-02-15"),
        ]
    )
    assert r.outcomes == {"applied": 1, "stale": 1}


# ---- referrals ---------------------------------------------------------------------------


def test_referral_credits_the_referrer_within_the_horizon() -> None:
    r, _out = run(
        [
            order("b", "2025-01-05", 100, 50),  # before the referral: no credit
            referral("a", "2025-01-10", "b"),
            order("b", "2025-01-15", 1000, 600, commission=50, event_id="ob1"),  # 350 -> 35
            order(
                "b", "2025-02-01", 100, 60, commission=5, fulfillment=5, kind="returned"
            ),  # -40 -> -4
            order("b", "2026-01-09", 100, 0, event_id="ob3"),  # within 365 days -> 10
            order("b", "2026-01-10T10:00:00Z", 100, 0),  # at the horizon: excluded
        ]
    )
    assert life(r, "a")["referral_value"] == "41.00"
    assert life(r, "a")["net_profit"] == "41.00"
    sa, sb = snap(r, "a"), snap(r, "b")
    assert sa["referrals"] == {"referred_customers": 1, "referred_by": None}
    assert sb["referrals"] == {"referred_customers": 0, "referred_by": "a"}
    assert sa["events_applied"] == 1  # credits are not events of the referrer
    assert sa["last_event_at"] == "2025-01-10T10:00:00+00:00"
    assert sa["as_of"] == "2026-01-09T10:00:00+00:00"  # but they move its as_of
    assert "ob3:referral" in r.states["a"].seen  # ob1's id aged out with its window


def test_first_referral_wins_and_referrers_count_distinct_customers() -> None:
    r, _ = run(
        [
            referral("a", "2026-01-10", "b"),
            referral("a", "2026-01-11", "b"),
            referral("x", "2026-01-12", "b"),
            referral("a", "2026-01-13", "c"),
            order("b", "2026-01-15", 100, 0),
        ]
    )
    assert snap(r, "a")["referrals"]["referred_customers"] == 2
    assert snap(r, "x")["referrals"]["referred_customers"] == 1
    assert snap(r, "b")["referrals"]["referred_by"] == "a"
    assert life(r, "a")["referral_value"] == "10.00" and life(r, "x")["referral_value"] == "0.00"


def test_referred_customer_without_own_events_has_no_snapshot() -> None:
    r, _ = run([referral("a", "2026-01-10", "b")])
    assert [s.key for s in r.snapshots()] == ["a"]


def test_redelivered_order_resends_its_credit_and_it_is_a_duplicate_there() -> None:
    r, _ = run(
        [
            referral("a", "2026-01-10", "b"),
            order("b", "2026-01-15", 100, 0, event_id="o1"),
            order("b", "2026-01-15", 100, 0, event_id="o1"),
        ]
    )
    assert r.outcomes == {"applied": 2, "duplicate": 1}
    assert life(r, "a")["referral_value"] == "10.00"
    result = r.model.apply_event(
        r.states["b"],
        r.decoder.decode(
            *order("b", "2026-01-15", 100, 0, event_id="o1"),
            now_us=to_us(_timestamp("2026-06-01T00:00:00Z")),
        ),
    )
    assert result.outcome == "duplicate" and result.forward is not None  # sent again, harmlessly


def test_order_before_the_link_does_not_credit_on_redelivery() -> None:
    r, _ = run(
        [
            order("b", "2026-01-15", 100, 0, event_id="o1"),
            referral("a", "2026-01-10", "b"),  # links b from 01-10, but o1 was processed before
            order("b", "2026-01-15", 100, 0, event_id="o1"),
        ]
    )
    assert life(r, "a")["referral_value"] == "0.00"


# ---- duplicates, as_of, windows ----------------------------------------------------------


def test_duplicates_have_no_effect_and_are_counted() -> None:
    e = order("c", "2026-01-05", 100, 50, event_id="same")
    r, out = run([e, e, e])
    assert r.outcomes == {"applied": 1, "duplicate": 2}
    assert life(r, "c")["revenue"] == "100.00" and snap(r, "c")["events_applied"] == 1
    assert out == []


def test_as_of_only_moves_forward_and_late_events_count() -> None:
    r, _ = run(
        [
            order("c", "2026-03-01", 100, 0),
            order("c", "2026-02-01", 50, 0),  # late, but within the window
            order("c", "2025-06-01", 7, 0),  # older than both windows: lifetime only
        ]
    )
    s = snap(r, "c")
    assert s["as_of"] == "2026-03-01T10:00:00+00:00"
    assert s["first_seen"] == "2025-06-01T10:00:00+00:00"
    assert s["trailing"]["revenue"] == "150.00" and s["lifetime"]["revenue"] == "157.00"


def test_trailing_window_edges_and_revenue_change() -> None:
    # as_of day 2026-04-20: trailing = (01-20, 04-20], previous = (2025-10-22, 01-20]
    r, _ = run(
        [
            order("c", "2025-10-22", 1, 0),  # day = as_of - 180: folded
            order("c", "2025-10-23", 10, 0),  # previous window
            order("c", "2026-01-20", 100, 0),  # as_of - 90: previous window
            order("c", "2026-01-21", 1000, 0),  # first trailing day
            order("c", "2026-04-20", 5, 0),
        ]
    )
    s = snap(r, "c")
    assert s["trailing"]["revenue"] == "1005.00"
    assert s["revenue_change"] == (1005 - 110) / 110
    assert s["lifetime"]["revenue"] == "1116.00"
    assert r.states["c"].prev_revenue == 110


def test_revenue_change_is_null_without_previous_revenue() -> None:
    r, _ = run([order("c", "2026-04-20", 5, 0)])
    assert snap(r, "c")["revenue_change"] is None


def test_running_sums_equal_a_fresh_sum_after_big_jumps() -> None:
    recs = [
        order("c", f"2025-{m:02d}-{d:02d}", m * 10 + d, d)
        for m in range(1, 11)
        for d in (1, 9, 17, 28)
    ]
    recs.insert(10, order("c", "2026-11-01", 1, 0))  # a jump of months, then late events
    r, _ = run(recs)
    st = r.states["c"]
    assert st.day is not None
    fresh = [sum(b[i] for d, b in st.buckets.items() if d > st.day - 90) for i in range(8)]
    assert st.trailing == fresh


def test_sweep_moves_as_of_never_components() -> None:
    r, _ = run([order("c", "2026-01-05", 1000, 100), sales("c", "2026-03-01", 10)])
    before = life(r, "c")
    out = r.sweep(to_us(_timestamp("2026-05-01T00:00:00Z")))
    s = snap(r, "c")
    assert s["lifetime"] == before
    assert s["trailing"]["revenue"] == "0.00" and s["as_of"] == "2026-05-01T00:00:00+00:00"
    # the old order aged out, leaving a loss: a warning from the sweep, with no trigger
    assert [(a.value["kind"], a.value["trigger_event_id"]) for a in out] == [("at_risk", None)]


def test_sweep_into_the_past_keeps_as_of() -> None:
    r, _ = run([order("c", "2026-01-05", 1000, 100)])
    r.sweep(to_us(_timestamp("2025-01-01T00:00:00Z")))
    assert snap(r, "c")["as_of"] == "2026-01-05T10:00:00+00:00"


def test_alert_ids_count_per_customer() -> None:
    from alerts.build import alert_id

    _r, out = run(
        [
            sales("a", "2026-01-01", 100),
            sales("b", "2026-01-01", 100),
            sales("a", "2026-02-05", 1),
            sales("b", "2026-02-05", 1),
        ]
    )
    got = [(a["customer_id"], a["alert_id"]) for a in alerts(out)]
    assert got == [("a", alert_id("a", 1)), ("b", alert_id("b", 1))]


def test_remembered_ids_are_dropped_two_windows_on_also_after_a_restore() -> None:
    """Ids are kept while applied within 2 × window_days of as_of (spec section 7), then
    dropped, so a state's id memory stays bounded; a state restored from its bytes
    (which does not carry the engine's hint of the oldest id's day) drops them too."""
    from datetime import date, timedelta

    from models import codec

    w = Settings().window_days

    def day(n: int) -> str:
        return (date(2025, 1, 1) + timedelta(days=n)).isoformat()

    r, _ = run(
        [
            order("c", day(0), 100, 50, event_id="old"),
            order("c", day(10), 100, 50, event_id="mid"),
            order("c", day(2 * w + 1), 100, 50, event_id="new"),
        ]
    )
    assert list(r.states["c"].seen) == ["mid", "new"]  # "old" was applied on day 0
    r.states["c"] = codec.loads(codec.dumps(r.states["c"]))
    r.feed(*order("c", day(2 * w + 11), 100, 50, event_id="latest"))
    assert list(r.states["c"].seen) == ["new", "latest"]  # "mid" (day 10) went too
    assert snap(r, "c")["events_applied"] == 4
