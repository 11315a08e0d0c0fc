"""The table value format and the settings object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import codec
from models.errors import ConfigError, ProfitwatchError, StateFormatError
from models.settings import Settings, load_settings
from tests.builders import invoice, order, referral, run, ticket


def test_state_round_trip_is_exact_and_compact() -> None:
    r, _ = run(
        [
            order("a", "2026-01-05", "1000.10", 600, currency="USD"),
            ticket("a", "2026-01-20", "t1", "chat", 13),  # 13/60*40: a non-terminating decimal
            invoice("a", "2026-03-01", "i1", 1000, "2026-02-15"),
            referral("a", "2026-03-02", "b"),
            order("b", "2026-03-05", 100, 10),
        ]
    )
    for s in r.states.values():
        raw = codec.dumps(s)
        assert codec.loads(raw) == s
        assert codec.dumps(codec.loads(raw)) == raw
    assert json.loads(codec.dumps(r.states["a"]))["v"] == codec.VERSION
    assert len(codec.dumps(r.states["a"])) < 1000


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"v": 99}',
        b'{"v": 1, "c": "x"}',
        b'{"v":1,"c":"x","s":9,"n":0,"k":0,"L":[],"T":[],"P":0}',
        b'{"v":1,"c":"x","s":0,"n":0,"k":0,"L":[0,0,0,0,0,0,0,0],"T":[0,0,0,0,0,0,0,0],'
        b'"P":0,"O":{"order/1":"7"}}',
    ],
)
def test_unreadable_state_is_a_state_format_error(raw: bytes) -> None:
    with pytest.raises(StateFormatError) as exc:
        codec.loads(raw)
    assert isinstance(exc.value, ProfitwatchError)


def test_applied_positions_round_trip_and_are_optional() -> None:
    r, _ = run([order("a", "2026-01-05", 100, 60)])
    s = r.states["a"]
    assert s.positions == {}  # replay has no offsets
    assert "O" not in json.loads(codec.dumps(s))  # states written before still load
    s.positions = {"order/1": 7, "~internal/3": 12}
    assert codec.loads(codec.dumps(s)).positions == {"order/1": 7, "~internal/3": 12}


def test_defaults_are_the_spec_defaults() -> None:
    s = Settings()
    assert (s.window_days, s.grace_days, s.confirm_days, s.referral_horizon_days) == (
        90,
        30,
        7,
        365,
    )
    assert str(s.fx_rates["GBP"]) == "1.17" and str(s.hourly_rate["onsite"]) == "120"
    assert [(b.min_days, str(b.rate)) for b in s.provision_rate] == [
        (1, "0.02"),
        (31, "0.10"),
        (61, "0.25"),
        (91, "0.50"),
        (181, "0.80"),
    ]
    assert (s.max_payload_bytes, s.max_future_skew_seconds, s.sweep_interval_seconds) == (
        65536,
        300,
        60,
    )
    assert s.topics.dlq == "profitability-dlq" and s.topics.invoices == "invoice-overdue"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "profitwatch.toml"
    cfg.write_text('window_days = 60\ngrace_days = 3\n[topics]\norders = "shop-orders"\n')
    monkeypatch.setenv("PROFITWATCH_WINDOW_DAYS", "30")
    monkeypatch.setenv("PROFITWATCH_FX_RATES", '{"EUR": "1", "SEK": "0.087"}')
    s = load_settings(cfg)
    assert (s.window_days, s.grace_days, s.topics.orders) == (30, 3, "shop-orders")
    assert str(s.fx_rates["SEK"]) == "0.087"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValueError):
        Settings(reporting_currency="JPY")
    with pytest.raises(ValueError):
        Settings(provision_rate=[{"min_days": 5, "rate": "0.1"}])
    with pytest.raises(ValueError):
        Settings(fx_rates={"EUR": "0"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=128), st.integers(0, 3)),
        max_size=40,
        unique_by=lambda t: t[0],
    )
)
def test_remembered_ids_round_trip_whatever_their_characters(ids: list[tuple[str, int]]) -> None:
    from models.ledger import CustomerState

    s = CustomerState("c")
    mark = 0
    for event_id, step in ids:  # marks never decrease in a real state
        mark += step
        s.seen[event_id] = mark
    restored = codec.loads(codec.dumps(s))
    assert restored.seen == s.seen
    assert list(restored.seen) == list(s.seen)  # expiry order survives too


def test_sequential_ids_are_front_coded() -> None:
    from models.ledger import CustomerState

    s = CustomerState("c")
    for i in range(100):
        s.seen[f"order-event-{i:08d}"] = 40_000
    assert len(codec.dumps(s)) < 100 * 6  # not 100 x 21 characters


def test_state_keeps_the_latest_alerts_and_they_survive_the_codec() -> None:
    from models.generator import GeneratorConfig, generate_records
    from models.replay import Replayer

    settings = Settings(recent_alerts_kept=2)
    rp = Replayer(settings, clock_us=2_000_000_000_000_000)
    sent: dict[str, list[dict[str, object]]] = {}
    for rec in generate_records(GeneratorConfig(customers=40, days=365, seed=3)):
        for out in rp.feed(rec["topic"], rec["value"]):
            if out.topic == settings.topics.alerts:
                sent.setdefault(str(out.key), []).append(out.value)
    assert any(len(alerts) > 2 for alerts in sent.values())  # so the cap is exercised
    for cid, state in rp.states.items():
        assert rp.model.recent_alerts_wire(state) == sent.get(cid, [])[-2:]
        assert codec.loads(codec.dumps(state)).recent_alerts == state.recent_alerts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.text(min_size=1, max_size=12), st.integers(0, 2)),
            st.tuples(st.just("forget"), st.integers(0, 6), st.just(0)),
            st.tuples(st.just("dump"), st.just(""), st.just(0)),
        ),
        max_size=60,
    )
)
def test_the_memoised_encoding_equals_a_fresh_one(ops: list[tuple[str, object, int]]) -> None:
    """Ids added at the end and forgotten at the front, encoded between any steps."""

    from models.ledger import CustomerState

    s = CustomerState("c")
    mark = 0
    for op, arg, step in ops:
        if op == "add" and arg not in s.seen:
            mark += step
            s.seen[str(arg)] = mark
        elif op == "forget":
            for event_id in list(s.seen)[: int(str(arg))]:
                del s.seen[event_id]
        else:  # several changes may come between two encodings
            assert codec.to_dict(s) == codec.to_dict(s, memo=False)
            assert codec.loads(codec.dumps(s)) == s


def test_memoised_encoding_along_a_generated_year() -> None:
    import json

    from models.generator import GeneratorConfig, generate_records
    from models.replay import Replayer

    rp = Replayer(Settings(), clock_us=2_000_000_000_000_000)
    checked = 0
    for rec in generate_records(GeneratorConfig(customers=12, days=400, seed=7)):
        rp.feed(rec["topic"], rec["value"])
        for state in rp.states.values():  # every state, after every record
            if checked % 7 == 0:  # most steps, not all: keeps the test quick
                fresh = json.dumps(codec.to_dict(state, memo=False), separators=(",", ":"))
                assert codec.dumps(state) == fresh.encode()  # ASCII ids: the same bytes
            checked += 1
    assert checked > 10_000


def test_ids_that_are_not_utf8_still_round_trip() -> None:
    from models.ledger import CustomerState

    s = CustomerState("c\ud800")  # a lone surrogate: no UTF-8 for it
    s.seen["e\udfff"] = 4
    s.seen["é-1"] = 6
    assert codec.loads(codec.dumps(s)) == s
