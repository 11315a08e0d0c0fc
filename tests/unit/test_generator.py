"""The stream generator: determinism, realism, and what the engine makes of it."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from models.generator import (
    ARCHETYPES,
    BAD_KINDS,
    GeneratorConfig,
    customer_archetypes,
    generate_labelled,
    generate_lines,
    generate_records,
)
from models.replay import Replayer, read_records
from models.settings import Settings

TOPICS = {"orders", "invoice-overdue", "support-tickets", "referrals", "sales-activities"}
SMALL = GeneratorConfig(customers=40, days=120, seed=11)
YEAR = GeneratorConfig(customers=60, days=365, seed=7)
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MONEY_RE = re.compile(r"^\d+\.\d{2}$")
MONEY_FIELDS = ("revenue", "cost_of_goods", "commission", "fulfillment_cost", "amount_due", "cost")


@dataclass
class Stream:
    cfg: GeneratorConfig
    lines: list[str]
    labelled: list[tuple[str, Any, str]]

    def good(self) -> list[tuple[int, str, dict[str, Any], str]]:
        """(position, topic, value, label) of the records that are not bad."""
        return [
            (i, t, v, lab)
            for i, (t, v, lab) in enumerate(self.labelled)
            if not lab.startswith("rejected:")
        ]


def _stream(cfg: GeneratorConfig) -> Stream:
    return Stream(cfg, list(generate_lines(cfg)), list(generate_labelled(cfg)))


@pytest.fixture(scope="module")
def small() -> Stream:
    return _stream(SMALL)


@pytest.fixture(scope="module")
def year() -> Stream:
    return _stream(YEAR)


# ---- determinism and format ----------------------------------------------------------


def test_same_config_same_bytes_and_another_seed_differs(small: Stream) -> None:
    assert list(generate_lines(SMALL)) == small.lines
    other = list(generate_lines(GeneratorConfig(customers=40, days=120, seed=12)))
    assert other != small.lines


def test_the_three_views_agree(small: Stream) -> None:
    records = list(generate_records(SMALL))
    assert len(records) == len(small.lines) == len(small.labelled)
    for line, rec, (topic, value, _) in zip(small.lines, records, small.labelled, strict=True):
        assert rec == {"topic": topic, "value": value}
        # The line is json.dumps of the record, money always written with 2 decimals.
        assert json.loads(line) == rec


def test_every_line_is_a_replay_record_and_all_topics_occur(small: Stream) -> None:
    topics: Counter[str] = Counter()
    for line in small.lines:
        rec = json.loads(line)
        assert set(rec) == {"topic", "value"}
        assert rec["topic"] in TOPICS
        assert isinstance(rec["value"], (dict, str))
        topics[rec["topic"]] += 1
    assert set(topics) == TOPICS


def test_fields_ids_times_and_money(small: Stream) -> None:
    start = SMALL.start
    end = start + timedelta(days=SMALL.days)
    kinds: Counter[str] = Counter()
    currencies: Counter[str] = Counter()
    for _, topic, v, _ in small.good():
        assert re.fullmatch(r"ev-\d{7}", v["event_id"])
        assert re.fullmatch(r"cust-\d{5}", v["customer_id"])
        assert TS_RE.match(v["occurred_at"])
        assert start <= datetime.fromisoformat(v["occurred_at"]) < end
        if topic != "referrals" and topic != "support-tickets":
            currencies[v["currency"]] += 1
        for f in MONEY_FIELDS:
            if f in v:
                m = v[f]
                kinds[type(m).__name__] += 1
                text = m if isinstance(m, str) else f"{m:.2f}"
                assert MONEY_RE.match(text) and float(text) == float(m), (f, m)
        if topic == "support-tickets":
            assert v["channel"] in {"phone", "email", "chat", "onsite", "self_service"}
            assert v["category"] in {"complaint", "question", "incident", "request"}
            assert isinstance(v["handling_minutes"], int) and isinstance(v["escalated"], bool)
    assert kinds["float"] and kinds["str"], "money comes as numbers and as strings"
    assert currencies["EUR"] > currencies["USD"] > 0 and len(currencies) >= 3


def test_event_ids_unique_and_business_ids_per_customer(small: Stream) -> None:
    seen: set[str] = set()
    placed: set[str] = set()
    for _, topic, v, lab in small.good():
        if lab == "duplicate":
            continue
        assert v["event_id"] not in seen
        seen.add(v["event_id"])
        for key in ("order_id", "ticket_id", "invoice_id", "activity_id"):
            if key in v:
                assert v[key].startswith(v["customer_id"] + "-")
        if topic == "orders":
            if v.get("kind", "placed") == "placed":
                assert v["order_id"] not in placed
                placed.add(v["order_id"])
            else:
                assert v["order_id"] in placed  # a return refers to an earlier order


def test_without_jitter_the_stream_is_ordered_by_occurred_at_but_for_late_records() -> None:
    last = ""
    for _, v, lab in generate_labelled(replace(SMALL, jitter=0.0)):
        if lab == "applied":  # redeliveries and stale updates come late on purpose
            assert isinstance(v, dict)  # an applied record is never a raw (malformed) line
            assert v["occurred_at"] >= last
            last = v["occurred_at"]


def _swaps(cfg: GeneratorConfig) -> tuple[list[int], int]:
    """Where the jittered stream swapped two neighbours of the unjittered one, and how
    many neighbours could have been swapped (different topics, < 1 day apart)."""
    plain = list(generate_labelled(replace(cfg, jitter=0.0)))
    jittered = list(generate_labelled(cfg))
    assert sorted(map(repr, plain)) == sorted(map(repr, jittered))  # the same records
    for topic in TOPICS:  # each topic's records keep their order
        assert [r for r in plain if r[0] == topic] == [r for r in jittered if r[0] == topic]
    swaps, i = [], 0
    while i < len(plain):
        if plain[i] == jittered[i]:
            i += 1
            continue
        a, b = plain[i], plain[i + 1]
        assert (jittered[i], jittered[i + 1]) == (b, a), i  # a swap of neighbours, no more
        assert a[0] != b[0]
        if isinstance(a[1], dict) and isinstance(b[1], dict) and a[2] == b[2] == "applied":
            gap = datetime.fromisoformat(b[1]["occurred_at"]) - datetime.fromisoformat(
                a[1]["occurred_at"]
            )
            assert timedelta(0) <= gap < timedelta(days=1)
        swaps.append(i)
        i += 2
    eligible = 0
    for a, b in itertools.pairwise(plain):
        if a[0] != b[0] and isinstance(a[1], dict) and isinstance(b[1], dict):
            at_a = datetime.fromisoformat(a[1]["occurred_at"])
            at_b = datetime.fromisoformat(b[1]["occurred_at"])
            eligible += abs(at_b - at_a) < timedelta(days=1)
    return swaps, eligible


def test_jitter_swaps_neighbours_of_different_topics_less_than_a_day_apart() -> None:
    assert SMALL.jitter == 0.05  # the default
    swaps, eligible = _swaps(SMALL)
    assert 0.02 * eligible < len(swaps) < 0.08 * eligible, (len(swaps), eligible)
    swaps, eligible = _swaps(replace(SMALL, jitter=0.3))
    assert 0.15 * eligible < len(swaps) < 0.4 * eligible, (len(swaps), eligible)
    assert _swaps(replace(SMALL, jitter=0.0))[0] == []


def test_activity_scales_the_records_per_customer_year() -> None:
    busy = sum(1 for _ in generate_lines(replace(SMALL, jitter=0.0)))
    quiet = sum(1 for _ in generate_lines(replace(SMALL, jitter=0.0, activity=0.23)))
    assert 0.15 * busy < quiet < 0.35 * busy
    with pytest.raises(ValueError):
        GeneratorConfig(activity=0)


def test_event_volume_per_customer(year: Stream) -> None:
    per_30_days = len(year.lines) / YEAR.customers / YEAR.days * 30
    assert 15 <= per_30_days <= 25


# ---- archetypes ------------------------------------------------------------------------


def test_archetypes_deterministic_and_all_present() -> None:
    cfg = GeneratorConfig(customers=100, seed=3)
    names = customer_archetypes(cfg)
    assert names == customer_archetypes(cfg)
    assert names != customer_archetypes(GeneratorConfig(customers=100, seed=4))
    counts = Counter(names)
    assert set(counts) == set(ARCHETYPES)
    assert counts["healthy"] == max(counts.values())
    # Every archetype shows up from the first 50 customers on.
    assert set(customer_archetypes(GeneratorConfig(customers=50, seed=5))) == set(ARCHETYPES)


def test_archetypes_behave(year: Stream) -> None:
    arche = dict(
        zip(
            (f"cust-{i + 1:05d}" for i in range(YEAR.customers)),
            customer_archetypes(YEAR),
            strict=True,
        )
    )
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    for _, topic, v, lab in year.good():
        if lab != "applied":
            continue
        s = stats[arche[v["customer_id"]]]
        s[topic] += 1
        if topic == "orders" and v.get("kind") == "returned":
            s["returned"] += 1
        if topic == "invoice-overdue":
            s[v["status"]] += 1
        if topic == "referrals":
            s["referrals"] += 1
        if topic == "sales-activities":
            s["sales_cost"] += int(float(v["cost"]))
    n = Counter(arche.values())

    def per(a: str, key: str) -> float:
        return stats[a][key] / n[a]

    assert per("heavy_returner", "returned") > 5 * per("healthy", "returned")
    assert per("bad_payer", "written_off") > 3 and per("healthy", "written_off") < 0.5
    assert per("bad_payer", "invoice-overdue") > 5 * per("healthy", "invoice-overdue")
    assert per("referrer", "referrals") >= 2 and stats["healthy"]["referrals"] == 0
    assert per("costly_acquisition", "sales_cost") > 3 * per("healthy", "sales_cost")
    assert per("declining", "support-tickets") > 2 * per("healthy", "support-tickets")


def test_declining_orders_fall_while_tickets_rise(year: Stream) -> None:
    declining = {
        f"cust-{i + 1:05d}" for i, a in enumerate(customer_archetypes(YEAR)) if a == "declining"
    }
    half = (YEAR.start + timedelta(days=YEAR.days / 2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    counts: Counter[tuple[str, bool]] = Counter()
    for _, topic, v, lab in year.good():
        if lab == "applied" and v["customer_id"] in declining:
            counts[topic, v["occurred_at"] >= half] += 1
    assert counts["orders", True] < counts["orders", False] / 2
    assert counts["support-tickets", True] > counts["support-tickets", False] * 1.5


# ---- upstream's habits -----------------------------------------------------------------


def test_duplicates_are_exact_repeats_shortly_after(small: Stream) -> None:
    first: dict[str, tuple[int, str]] = {}
    dups = 0
    for i, ((_, v, lab), line) in enumerate(zip(small.labelled, small.lines, strict=True)):
        if lab == "applied":
            first[v["event_id"]] = (i, line)
        elif lab == "duplicate":
            dups += 1
            j, original = first[v["event_id"]]
            assert line == original and j < i
    assert dups > 0


def test_stale_ticket_updates_are_older_and_smaller(small: Stream) -> None:
    latest: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    stale = 0
    for _, topic, v, lab in small.good():
        if topic != "support-tickets":
            continue
        if lab == "applied":
            prev = latest.get(v["ticket_id"])
            if prev is not None:
                assert v["occurred_at"] > prev["occurred_at"]
                assert v["handling_minutes"] > prev["handling_minutes"]
                assert v["escalated"] >= prev["escalated"]
                assert (v["channel"], v["category"]) == (prev["channel"], prev["category"])
            latest[v["ticket_id"]] = v
        elif lab == "stale":
            stale += 1
            newest = latest[v["ticket_id"]]
            assert v["occurred_at"] < newest["occurred_at"]
            assert v["handling_minutes"] < newest["handling_minutes"]
            assert v["event_id"] not in ids  # a new event, not a redelivery
        ids.add(v["event_id"])
    assert stale > 0


def test_invoice_lifecycle(year: Stream) -> None:
    state: dict[str, tuple[str, str]] = {}
    for _, topic, v, lab in year.good():
        if topic != "invoice-overdue" or lab != "applied":
            continue
        occurred = datetime.fromisoformat(v["occurred_at"]).astimezone(UTC).date()
        assert (occurred - date.fromisoformat(v["due_date"])).days >= 1
        prev = state.get(v["invoice_id"])
        if prev is None:
            assert v["status"] == "overdue"
        else:
            assert prev[0] != "paid"  # nothing follows payment
            assert prev[0] != "written_off" or v["status"] == "paid"
            assert v["occurred_at"][:10] > prev[1][:10]
        state[v["invoice_id"]] = (v["status"], v["occurred_at"])
    assert {s for s, _ in state.values()} == {"overdue", "paid", "written_off"}


def test_referrals_come_before_the_referred_customers_events(year: Stream) -> None:
    referred_at: dict[str, int] = {}
    first_event: dict[str, int] = {}
    first_order: dict[str, int] = {}
    for i, topic, v, lab in year.good():
        cid = v["customer_id"]
        if topic == "referrals" and lab == "applied":
            assert v["referred_customer_id"] != cid
            assert v["referred_customer_id"] not in referred_at  # one referrer each
            referred_at[v["referred_customer_id"]] = i
        first_event.setdefault(cid, i)
        if topic == "orders":
            first_order.setdefault(cid, i)
    assert len(referred_at) >= 5
    for cid, i in referred_at.items():
        assert cid in first_order, "a referred customer orders"
        assert first_event[cid] > i and first_order[cid] > i


def test_one_bad_record_of_each_kind(small: Stream) -> None:
    assert len(small.lines) >= 2000
    kinds = Counter(
        lab.removeprefix("rejected:") for _, _, lab in small.labelled if lab.startswith("rejected:")
    )
    assert set(kinds) == set(BAD_KINDS)
    share = sum(kinds.values()) / len(small.lines)
    assert share < 0.01


def test_no_bad_records_duplicates_or_stale_when_rates_are_zero() -> None:
    cfg = GeneratorConfig(customers=20, days=90, bad_record_rate=0, duplicate_rate=0, stale_rate=0)
    assert {lab for _, _, lab in generate_labelled(cfg)} == {"applied"}


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(start=datetime(2025, 1, 1))  # naive
    with pytest.raises(ValueError):
        GeneratorConfig(duplicate_rate=1.5)


# ---- through the engine ---------------------------------------------------------------


def test_engine_applies_what_is_good_and_rejects_what_is_bad(year: Stream) -> None:
    settings = Settings()
    r = Replayer(settings)
    alerts: Counter[str] = Counter()
    records = read_records(year.lines, settings.max_payload_bytes)
    for (n, topic, value, size, _), (_, _, label) in zip(records, year.labelled, strict=True):
        outcome, _, code = label.partition(":")
        before, before_code = r.outcomes[outcome], r.rejections[code]
        for out in r.feed(topic, value, size=size, offset=n):
            if out.topic == settings.topics.alerts:
                alerts[out.value["kind"]] += 1
        assert r.outcomes[outcome] == before + 1, (n, label, r.outcomes)
        if code:
            assert r.rejections[code] == before_code + 1, (n, label)
    labels = Counter(lab.partition(":")[0] for _, _, lab in year.labelled)
    assert r.outcomes == labels
    assert set(r.rejections) == set(BAD_KINDS)
    assert alerts["became_unprofitable"] >= 1 and alerts["at_risk"] >= 1

    # Declining customers and bad payers cross into loss; healthy ones stay healthy.
    final: Counter[tuple[str, str]] = Counter()
    for i, a in enumerate(customer_archetypes(YEAR)):
        state = r.states.get(f"cust-{i + 1:05d}")
        final[a, state.status if state else "none"] += 1
    population = Counter(customer_archetypes(YEAR))
    assert final["declining", "unprofitable"] >= population["declining"] * 0.7
    assert (
        final["bad_payer", "unprofitable"] + final["bad_payer", "at_risk"]
        >= population["bad_payer"] / 2
    )
    assert final["healthy", "profitable"] >= population["healthy"] * 0.9
