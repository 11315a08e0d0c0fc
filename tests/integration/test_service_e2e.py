"""The streaming service on a real broker equals `replay` on the same records
(spec section 9): DLQ codes as a multiset, every customer's final snapshot figures,
and the alerts of customers without referral credits, in order. A worker killed with
`kill -9` mid-stream resumes from its table with nothing lost and nothing doubled.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models import codec
from models.ledger import REF
from models.settings import Settings
from streams.broker import free_port
from streams.produce import send_all, to_kafka
from tests.integration.flow import (
    FIGURES,
    alerts_per_customer,
    expected,
    final_figures,
    in_replay_order,
    latest,
    latest_states,
    paced,
    renamed,
    replayed_alerts,
    settle_referrals,
    stream,
    wait_for,
)
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import produce, read_topic


@pytest.mark.timeout(420)
def test_service_equals_replay(kafka_bootstrap: str, service: Any, tmp_path: Path) -> None:
    env, settings, workers = service
    records = stream(customers=12, days=150, seed=11)
    mine = renamed(records, settings)
    replay = expected(mine, settings)

    worker = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(worker)
    ready_s = worker.start()
    assert ready_s < 30

    n_ref = sum(1 for r in records if r["topic"] == "referrals")
    produce(kafka_bootstrap, [to_kafka(r) for r in mine[:n_ref]], pace_s=0.05)
    # let the referrals settle: the referrers' snapshots are out, the links are applied
    settle_referrals(kafka_bootstrap, settings, mine[:n_ref])
    # one record at a time, each acknowledged, and never two records of one customer
    # close together (spec section 9's condition for comparable alerts). The spec
    # says ~50 ms; on tansu a consumer's fetch can take ~450 ms to return, and records
    # of several topics returned by one fetch are applied in Faust's partition
    # order, not the producer's, so the gap here is 0.6 s.
    send_all(kafka_bootstrap, paced(mine[n_ref:], gap_s=0.6), pace_s=0.001)

    want = final_figures(replay)
    snaps = wait_for(kafka_bootstrap, settings, want, timeout_s=240)

    # final snapshot figures of every customer
    for cid, s in replay.states.items():
        if s.has_own_events:
            exp = replay.model.snapshot_wire(s)
            got = snaps[cid]
            assert {k: got[k] for k in FIGURES} == {k: exp[k] for k in FIGURES}, cid

    # DLQ codes, as a multiset
    dlq = read_topic(kafka_bootstrap, settings.topics.dlq, idle_s=1.0)
    assert (
        Counter(json.loads(r.value)["error"]["code"] for r in dlq if r.value) == replay.rejections
    )
    assert all(dict(r.headers).get("__streams.errors.exception") for r in dlq)

    # alerts per customer, in order, for customers that receive no referral credits
    got_alerts = alerts_per_customer(kafka_bootstrap, settings)
    exp_alerts: dict[str, list[dict[str, Any]]] = {}
    for out in replayed_alerts(mine, settings):
        exp_alerts.setdefault(out["customer_id"], []).append(out)
    credited = {cid for cid, s in replay.states.items() if s.lifetime[7] != 0}
    # Spec section 9's condition, checked rather than assumed from the pacing: the
    # customer's records were applied in replay's order (read back from the
    # changelog's states, whose remembered ids are in the order they were applied).
    # Under load Faust can still apply two records of one customer from different
    # topics in the other order.
    in_order = applied_in_order(kafka_bootstrap, settings, in_replay_order(mine, settings))
    compared = 0
    for cid, s in replay.states.items():
        if not s.has_own_events or cid in credited or not in_order.get(cid):
            continue
        assert [(a["kind"], a["alert_id"], a["as_of"]) for a in got_alerts.get(cid, [])] == [
            (a["kind"], a["alert_id"], a["as_of"]) for a in exp_alerts.get(cid, [])
        ], cid
        assert snaps[cid]["status"] == replay.model.snapshot_wire(s)["status"], cid
        compared += 1
    # How many qualify varies with the machine's load (see README); every customer
    # that does must match replay exactly.
    print(f"alerts compared in order for {compared} customers applied in replay's order")
    assert sum(len(v) for v in exp_alerts.values()) > 0

    # the compacted snapshot topic converges to the table: its latest value per key is
    # the snapshot of the table's (changelog's) latest state for that key
    table = latest_states(kafka_bootstrap, f"{settings.app_id}-customers-changelog")
    for cid, state in table.items():
        if state.has_own_events:
            assert snaps[cid] == json.loads(json.dumps(replay.model.snapshot_wire(state))), cid
    assert set(table) >= set(want)


def applied_in_order(
    bootstrap: str, settings: Settings, records: list[dict[str, Any]]
) -> dict[str, bool]:
    """Per customer: did the service apply its own events in the order of `records`?"""
    order: dict[str, list[str]] = {}
    for rec in read_topic(
        bootstrap, f"{settings.app_id}-customers-changelog", idle_s=4.0, timeout_s=120
    ):
        if rec.key is None or rec.value is None:
            continue
        seen = codec.loads(rec.value).seen
        ids = order.setdefault(rec.key.decode(), [])
        known = set(ids)
        ids += [i for i in seen if not i.endswith(":referral") and i not in known]
    position: dict[str, int] = {}
    for n, r in enumerate(records):
        v = r["value"]
        if isinstance(v, dict) and isinstance(v.get("event_id"), str):
            position.setdefault(v["event_id"], n)
    return {
        cid: [position[i] for i in ids] == sorted(position[i] for i in ids)
        for cid, ids in order.items()
    }


@pytest.mark.timeout(420)
def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    # Under 180 days of history: every redelivered id is inside the dedupe horizon
    # (2 x window_days of the customer's as_of, spec section 7). Produced at full speed,
    # topics race ahead of each other by months of event time, and a longer history
    # would let a redelivered old event fall outside it.
    # With referrals: credits cross partitions through the internal topic and must
    # survive the crash too (a credit was once lost here: Faust committed before its
    # producer buffer was drained; see streams/app.py).
    records = stream(customers=80, days=170, seed=5)
    mine = renamed(records, settings)
    replay = expected(mine, settings)
    n_ref = sum(1 for r in records if r["topic"] == "referrals")
    assert n_ref > 0 and any(s.lifetime[REF] for s in replay.states.values())

    log = tmp_path / "worker.log"
    # Changed states reach the changelog at commits: commit every second, so the first
    # one (the sign to kill) comes early in the stream on a fast host too, and the
    # crash lands between many commits rather than before the second.
    env = env | {"PROFITWATCH_COMMIT_INTERVAL_SECONDS": "1"}
    first = WorkerProcess(env, log)
    workers.append(first)
    first.start()
    produce(kafka_bootstrap, [to_kafka(r) for r in mine[:n_ref]], pace_s=0.05)
    settle_referrals(kafka_bootstrap, settings, mine[:n_ref])
    produce(kafka_bootstrap, [to_kafka(r) for r in mine[n_ref:]])  # as fast as it goes

    # kill it hard while it is in the middle of the stream
    total = sum(s.events_applied for s in replay.states.values())
    # wait for the first progress the worker shows (its changelog), then kill it
    changelog = f"{settings.app_id}-customers-changelog"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if read_topic(kafka_bootstrap, changelog, idle_s=0.3, timeout_s=5):
            break
        time.sleep(0.3)
    first.kill9()
    assert first.proc is not None and first.proc.returncode == -9
    snaps = latest(kafka_bootstrap, settings.topics.snapshots, timeout_s=30)
    done = sum(s.get("events_applied", 0) for s in snaps.values())
    assert 0 < done < total, f"killed at {done} of {total} applied: not mid-stream"

    second = WorkerProcess(env, log)
    workers.append(second)
    second.start()
    want = final_figures(replay)
    snaps = wait_for(kafka_bootstrap, settings, want, timeout_s=300)
    for cid, s in replay.states.items():
        if s.has_own_events:
            exp = replay.model.snapshot_wire(s)
            assert {k: snaps[cid][k] for k in FIGURES} == {k: exp[k] for k in FIGURES}, cid
    # and the restored table itself, not just the last snapshots
    table = latest_states(kafka_bootstrap, f"{settings.app_id}-customers-changelog")
    for cid, s in replay.states.items():
        if s.has_own_events:
            assert (
                table[cid].lifetime == s.lifetime and table[cid].events_applied == s.events_applied
            )

    # A worker with an empty data dir has only the changelog to restore from. Faust
    # ends a partition's recovery at the broker's "latest" offset, which tansu gets
    # right only if the partition's last batch holds one record: states leave in whole
    # batches, each shipment ending with one alone (streams/record_batches.py).
    second.stop()
    port = free_port()
    fresh = env | {
        "PROFITWATCH_DATA_DIR": str(tmp_path / "fresh"),
        "PROFITWATCH_WEB_PORT": str(port),
    }
    third = WorkerProcess(fresh, tmp_path / "fresh.log")
    workers.append(third)
    third.start(web=True)  # ready: recovery is over
    for cid, s in replay.states.items():
        if s.has_own_events:
            url = f"http://127.0.0.1:{port}/customers/{cid}"
            with urllib.request.urlopen(url, timeout=30) as resp:
                restored = json.loads(resp.read())
            exp = replay.model.snapshot_wire(s)
            assert {k: restored[k] for k in FIGURES} == {k: exp[k] for k in FIGURES}, cid
            assert restored["events_applied"] == s.events_applied, cid
