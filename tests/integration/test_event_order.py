"""The service applies records in the order of application (contract section 9), so its
alerts are the events' alerts however Kafka interleaves the five topics: a backfill, a
catch-up after SIGTERM and after kill -9 with records held, and live records, each
compared with `replay` for *every* customer that receives no referral credits."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models.generator import GeneratorConfig, generate_records
from models.ledger import REF
from models.replay import Replayer
from models.settings import Settings
from streams.broker import free_port
from streams.produce import send_all, to_kafka
from tests.integration.flow import (
    FIGURES,
    alerts_per_customer,
    paced,
    renamed,
    settle_referrals,
    wait_for,
)
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import read_topic


class Expected:
    """Replay over the phases the service saw, each phase's records in the order of
    application, one phase after the other (the referrals settled before the rest)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.r = Replayer(settings)
        self.alerts: dict[str, list[dict[str, Any]]] = {}

    def phase(self, records: list[dict[str, Any]]) -> Expected:
        lines = [json.dumps(r, default=str).encode() for r in records]
        for _, outputs in self.r.replay_lines(lines):
            for o in outputs:
                if o.topic == self.settings.topics.alerts:
                    self.alerts.setdefault(o.value["customer_id"], []).append(o.value)
        return self

    def figures(self) -> dict[str, dict[str, Any]]:
        out = {}
        for cid, s in self.r.states.items():
            if s.has_own_events:
                exp = self.r.model.snapshot_wire(s)
                out[cid] = {k: exp[k] for k in FIGURES}
        return out

    def uncredited(self) -> list[str]:
        return sorted(
            c for c, s in self.r.states.items() if s.has_own_events and s.lifetime[REF] == 0
        )


def generated(customers: int, days: int, seed: int, settings: Settings) -> list[dict[str, Any]]:
    """A generated stream with the generator's upstream jitter, on this test's topics."""
    cfg = GeneratorConfig(customers=customers, days=days, seed=seed)
    assert cfg.jitter > 0
    return renamed(list(generate_records(cfg)), settings)


def split_referrals(
    records: list[dict[str, Any]], settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ref = [r for r in records if r["topic"] == settings.topics.referrals]
    return ref, [r for r in records if r["topic"] != settings.topics.referrals]


def check_equal(bootstrap: str, settings: Settings, exp: Expected) -> int:
    """Every customer's final figures and status, the DLQ multiset, and the alerts in
    order of every customer without credits; returns how many were compared."""
    want = exp.figures()
    snaps = wait_for(bootstrap, settings, want, timeout_s=240)
    for cid, figures in want.items():
        assert {k: snaps[cid][k] for k in FIGURES} == figures, cid
    statuses = {c: s.status for c, s in exp.r.states.items() if s.has_own_events}
    assert {c: snaps[c]["status"] for c in statuses} == statuses
    # A record redelivered after a crash is dead-lettered again: the same source
    # topic, partition and offset, which is how a DLQ consumer tells them apart.
    letters = {}
    for rec in read_topic(bootstrap, settings.topics.dlq, idle_s=1.0):
        err = json.loads(rec.value or b"{}")["error"]
        letters[(err["topic"], err["partition"], err["offset"])] = err["code"]
    assert Counter(letters.values()) == Counter(exp.r.rejections)
    got = alerts_per_customer(bootstrap, settings)
    compared = exp.uncredited()
    # The service agrees on who received no credits, and alerted no one else that
    # replay leaves out: the compared set is every such customer on both sides.
    service_uncredited = sorted(
        c for c, snap in snaps.items() if snap["lifetime"]["referral_value"] == "0.00"
    )
    assert service_uncredited == compared
    assert set(got) - {c for c in want if c not in compared} <= set(compared)
    for cid in compared:
        assert [(a["kind"], a["alert_id"], a["as_of"]) for a in got.get(cid, [])] == [
            (a["kind"], a["alert_id"], a["as_of"]) for a in exp.alerts.get(cid, [])
        ], cid
    assert sum(len(exp.alerts.get(c, [])) for c in compared) > 0  # alerts were compared
    return len(compared)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def settled(
    bootstrap: str, env: dict[str, str], settings: Settings, log: Path, ref: list[dict[str, Any]]
) -> WorkerProcess:
    """A worker that applied the referrals (and their links), then stopped (SIGTERM)."""
    worker = WorkerProcess(env, log)
    worker.start()
    send_all(bootstrap, (to_kafka(r) for r in ref), pace_s=0.01)
    settle_referrals(bootstrap, settings, ref)
    worker.stop()
    return worker


@pytest.mark.timeout(420)
def test_backfill_gives_replays_alerts_for_every_customer(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    records = generated(40, 200, 23, settings)
    ref, rest = split_referrals(records, settings)
    exp = Expected(settings).phase(ref).phase(rest)
    workers.append(settled(kafka_bootstrap, env, settings, tmp_path / "w.log", ref))

    send_all(kafka_bootstrap, (to_kafka(r) for r in rest))  # all at once, no worker
    port = free_port()
    # A small memory bound, so the backfill pauses and resumes partitions many times.
    env = env | {"PROFITWATCH_WEB_PORT": str(port), "PROFITWATCH_MAX_HELD_RECORDS": "300"}
    worker = WorkerProcess(env, tmp_path / "w.log")
    workers.append(worker)
    worker.start(web=True)
    compared = check_equal(kafka_bootstrap, settings, exp)
    assert compared >= 30
    print(f"alerts compared in order for all {compared} customers without credits")
    assert metric(port, "profitwatch_held_records") == 0
    assert metric(port, "profitwatch_order_enforced_total") == 0
    assert metric(port, "profitwatch_order_pauses_total") > 0


@pytest.mark.timeout(480)
def test_catch_up_after_sigterm_and_after_kill_9_with_records_held(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    records = generated(40, 240, 31, settings)
    ref, rest = split_referrals(records, settings)
    thirds = [rest[: len(rest) // 3], rest[len(rest) // 3 : 2 * len(rest) // 3]]
    thirds.append(rest[2 * len(rest) // 3 :])
    exp = Expected(settings).phase(ref)
    log = tmp_path / "w.log"
    workers.append(settled(kafka_bootstrap, env, settings, log, ref))
    port = free_port()
    env = env | {"PROFITWATCH_WEB_PORT": str(port), "PROFITWATCH_COMMIT_INTERVAL_SECONDS": "1"}

    def backlog_then_worker(backlog: list[dict[str, Any]]) -> WorkerProcess:
        """Produce while no worker runs, then start one on the backlog."""
        send_all(kafka_bootstrap, (to_kafka(r) for r in backlog))
        exp.phase(backlog)
        worker = WorkerProcess(env, log)
        workers.append(worker)
        worker.start(web=True)
        return worker

    # 1. A third, then the worker; it catches up; SIGTERM.
    first = backlog_then_worker(thirds[0])
    wait_for(kafka_bootstrap, settings, exp.figures(), timeout_s=240)
    first.stop()

    # 2. The next third while it is down; the new worker is killed with kill -9
    #    while it holds records for their turn.
    second = backlog_then_worker(thirds[1])
    deadline = time.monotonic() + 60
    held = 0.0
    while time.monotonic() < deadline and not held:
        held = metric(port, "profitwatch_held_records")
        time.sleep(0.02)
    assert held > 0, "never saw records held"
    second.kill9()

    # 3. The last third; a third worker picks up from the committed offsets.
    backlog_then_worker(thirds[2])
    assert check_equal(kafka_bootstrap, settings, exp) >= 30


@pytest.mark.timeout(420)
def test_live_records_in_event_time_order_give_replays_alerts(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    """Section 9's live condition: a customer's records reach the broker in event-time
    order, each acknowledged, at least ~50 ms apart."""
    env, settings, workers = service
    records = generated(12, 150, 11, settings)
    ref, rest = split_referrals(records, settings)
    exp = Expected(settings).phase(ref).phase(rest)
    log = tmp_path / "w.log"
    workers.append(settled(kafka_bootstrap, env, settings, log, ref))
    worker = WorkerProcess(env, log)
    workers.append(worker)
    worker.start()
    # Each customer's records in the order of application, customers round-robin, each
    # record acknowledged before the next, a customer's two records >= 60 ms apart.
    ordered = [rest[n] for n, _ in Replayer(settings).replay_lines(_lines(rest))]
    per: dict[str, list[dict[str, Any]]] = {}
    for r in ordered:
        v = r["value"]
        cid = v.get("customer_id") if isinstance(v, dict) else None
        per.setdefault(cid if isinstance(cid, str) else "", []).append(r)
    queues = [list(reversed(q)) for _, q in sorted(per.items())]
    live: list[dict[str, Any]] = []
    while any(queues):
        live += [q.pop() for q in queues if q]
    send_all(kafka_bootstrap, paced(live, gap_s=0.06), pace_s=0.001)
    assert check_equal(kafka_bootstrap, settings, exp) >= 8


def _lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r, default=str).encode() for r in records]
