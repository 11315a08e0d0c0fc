"""Shared by the integration tests: generated streams, replay's expectations, and
reading the service's outputs back from the broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from models import codec
from models.generator import GeneratorConfig, generate_records
from models.replay import Replayer
from models.settings import Settings
from streams.produce import to_kafka
from tests.kafka_helpers import read_topic

FIGURES = (
    "trailing",
    "lifetime",
    "open_invoices",
    "referrals",
    "first_seen",
    "last_event_at",
    "events_applied",
)


def stream(customers: int, days: int, seed: int) -> list[dict[str, Any]]:
    """Referrals first (the spec's condition for comparable credits), then the rest with
    customers interleaved round-robin, each customer's own records in their order, so
    two records of one customer are far apart when sent one by one."""
    recs = list(generate_records(GeneratorConfig(customers=customers, days=days, seed=seed)))
    referrals = [r for r in recs if r["topic"] == "referrals"]
    per: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if r["topic"] == "referrals":
            continue
        v = r["value"]
        cid = v.get("customer_id") if isinstance(v, dict) else None
        per.setdefault(cid if isinstance(cid, str) else "", []).append(r)
    rest: list[dict[str, Any]] = []
    queues = [list(reversed(q)) for _, q in sorted(per.items())]
    while any(queues):
        for q in queues:
            if q:
                rest.append(q.pop())
    return referrals + rest


def paced(records: list[dict[str, Any]], gap_s: float) -> Iterator[Any]:
    last: dict[str, float] = {}
    for r in records:
        v = r["value"]
        cid = v.get("customer_id") if isinstance(v, dict) else None
        if isinstance(cid, str):
            wait = last.get(cid, 0.0) + gap_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last[cid] = time.monotonic()
        yield to_kafka(r)


def expected(records: list[dict[str, Any]], settings: Settings) -> Replayer:
    lines = [json.dumps(r, default=str).encode() for r in records]
    r = Replayer(settings)
    for _ in r.replay_lines(lines):
        pass
    return r


def renamed(records: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """The same records on this test's own topic names."""
    names = dict(zip(Settings().topics.input_kinds(), settings.topics.input_kinds(), strict=True))
    return [r | {"topic": names[r["topic"]]} for r in records]


def latest(bootstrap: str, topic: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in read_topic(bootstrap, topic, idle_s=1.0, **kw):
        if rec.key is not None and rec.value is not None:
            out[rec.key.decode()] = json.loads(rec.value)
    return out


def wait_for(
    bootstrap: str, settings: Settings, want: dict[str, dict[str, Any]], timeout_s: float
) -> dict[str, Any]:
    """Until every customer's latest snapshot has the wanted fields.

    Not just `events_applied`: a referrer's credits reach it through the internal topic
    after the referred customers' orders, and its snapshot only after the next commit,
    so its own events can all be counted while credits are still on their way."""
    deadline = time.monotonic() + timeout_s
    snaps: dict[str, Any] = {}

    def behind() -> dict[str, Any]:
        """Per customer behind, only the fields that differ: (service's, wanted)."""
        out = {}
        for c, w in want.items():
            diff = {k: (snaps.get(c, {}).get(k), v) for k, v in w.items()}
            diff = {k: d for k, d in diff.items() if d[0] != d[1]}
            if diff:
                out[c] = diff
        return out

    while time.monotonic() < deadline:
        snaps = latest(bootstrap, settings.topics.snapshots, timeout_s=30)
        if not behind():
            return snaps
        time.sleep(1.0)
    raise AssertionError(f"service did not catch up: {dict(list(behind().items())[:3])}")


def final_figures(replay: Replayer) -> dict[str, dict[str, Any]]:
    """Replay's final snapshot figures per customer: what the service must end with."""
    out = {}
    for cid, s in replay.states.items():
        if s.has_own_events:
            exp = replay.model.snapshot_wire(s)
            out[cid] = {k: exp[k] for k in FIGURES}
    return out


def settle_referrals(bootstrap: str, settings: Settings, referrals: list[dict[str, Any]]) -> None:
    """Wait until every referral is applied at its referrer and its link at the referred
    customer (spec section 9: credits compare only once the referrals have settled)."""
    after = expected(referrals, settings).states
    wait_for(
        bootstrap,
        settings,
        {c: {"events_applied": s.events_applied} for c, s in after.items() if s.has_own_events},
        timeout_s=60,
    )
    links = {c: s.referred_by for c, s in after.items() if s.referred_by is not None}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        table = latest_states(bootstrap, f"{settings.app_id}-customers-changelog")
        if all(c in table and table[c].referred_by == r for c, r in links.items()):
            return
        time.sleep(0.5)
    raise AssertionError("referral links did not settle")


def latest_states(bootstrap: str, changelog: str) -> dict[str, Any]:
    out = {}
    # A generous idle time: on a loaded machine a tansu fetch can stall long enough
    # for a short one to stop reading mid-partition and see an older state.
    for rec in read_topic(bootstrap, changelog, idle_s=4.0, timeout_s=120):
        if rec.key is not None and rec.value is not None:
            out[rec.key.decode()] = codec.loads(rec.value)
    return out


def alerts_per_customer(bootstrap: str, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The alerts topic per customer in order, each alert once: a redelivered trigger
    re-sends its alert with the same alert_id, which consumers de-duplicate."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in read_topic(bootstrap, settings.topics.alerts, idle_s=1.0):
        alert = json.loads(rec.value or b"{}")
        theirs = out.setdefault(alert["customer_id"], [])
        if all(alert["alert_id"] != a["alert_id"] for a in theirs):
            theirs.append(alert)
    return out
