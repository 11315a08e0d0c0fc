"""The service applies records in the order of application (contract section 9), so its
alerts are the events' alerts however Kafka interleaves the five topics: a backfill, a
catch-up after SIGTERM and after kill -9 with records held, and live records, each
compared with `replay` for *every* customer that receives no referral credits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from models.replay import Replayer
from streams.broker import free_port
from streams.produce import send_all, to_kafka
from tests.integration.expectations import (
    Expected,
    check_equal,
    generated,
    metric,
    settled,
    split_referrals,
)
from tests.integration.flow import paced, wait_for
from tests.integration.worker import WorkerProcess


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
