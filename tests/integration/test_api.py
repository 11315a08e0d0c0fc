"""The query API on two real workers sharing one broker: every customer answered by
either worker (Faust table routing to the owner), lists merged across workers, the
token check, 404s and bad parameters, all as JSON."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from models import query
from streams.broker import free_port
from streams.produce import to_kafka
from tests.integration.flow import (
    alerts_per_customer,
    expected,
    final_figures,
    latest,
    renamed,
    settle_referrals,
    stream,
    wait_for,
)
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import produce

TOKEN = "s3cret-token"


def get(url: str, token: str | None = TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        body, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
    return status, (json.loads(body) if "json" in ctype else body.decode())


def ok(url: str) -> Any:
    status, body = get(url)
    assert status == 200, (url, status, body)
    return body


def local_ids(base: str) -> set[str]:
    """The customers this worker itself owns (its part of the fan-out)."""
    status, body = get(f"{base}/internal/customers?limit=500")
    if status != 200:
        return set()
    assert not body["more"]
    return {r["customer_id"] for r in body["customers"]}


@pytest.mark.timeout(300)
def test_two_workers_answer_for_every_customer(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    bases = []
    for name in ("a", "b"):
        port = free_port()
        w = WorkerProcess(
            env
            | {
                "PROFITWATCH_WEB_PORT": str(port),
                "PROFITWATCH_API_TOKEN": TOKEN,
                "PROFITWATCH_DATA_DIR": str(tmp_path / f"data-{name}"),
            },
            tmp_path / f"worker-{name}.log",
        )
        workers.append(w)
        w.start(web=True)
        bases.append(f"http://127.0.0.1:{port}")
    a, b = bases

    records = stream(customers=30, days=150, seed=11)
    mine = renamed(records, settings)
    replay = expected(mine, settings)
    n_ref = sum(1 for r in records if r["topic"] == "referrals")
    produce(kafka_bootstrap, [to_kafka(r) for r in mine[:n_ref]], pace_s=0.02)
    settle_referrals(kafka_bootstrap, settings, mine[:n_ref])
    produce(kafka_bootstrap, [to_kafka(r) for r in mine[n_ref:]])
    wait_for(kafka_bootstrap, settings, final_figures(replay), timeout_s=180)
    snapshots = latest(kafka_bootstrap, settings.topics.snapshots)
    customers = set(snapshots)
    assert len(customers) >= 25

    # both workers own some customers, none twice, all between them (after the
    # second worker's rebalance has settled)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        own_a, own_b = local_ids(a), local_ids(b)
        if own_a and own_b and own_a | own_b == customers:
            break
        time.sleep(1.0)
    assert own_a and own_b, "one worker owns nothing: routing is not exercised"
    assert not own_a & own_b and own_a | own_b == customers

    # every customer from either worker: the owner's snapshot == the compacted topic
    for cid in sorted(customers):
        for base in bases:
            assert ok(f"{base}/customers/{cid}") == snapshots[cid], (base, cid)

    # the list, paged from one worker, spans both, in the asked order
    rows = [query.row_of(s) for s in snapshots.values()]
    for sort in ("net_profit", "-revenue", "customer_id"):
        want, _ = query.page(rows, query.parse_list_query({"sort": sort, "limit": "500"}))
        got: list[str] = []
        cursor = None
        for _ in range(20):
            body = ok(
                f"{b}/customers?sort={sort}&limit=7" + (f"&cursor={cursor}" if cursor else "")
            )
            assert body["counts"] == dict(Counter(s["status"] for s in snapshots.values())) | {
                k: 0 for k in query.STATUSES if k not in {s["status"] for s in snapshots.values()}
            }
            got += [r["customer_id"] for r in body["customers"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert got == [r["customer_id"] for r in want], sort
    statuses = Counter(s["status"] for s in snapshots.values())
    body = ok(f"{a}/customers?status=unprofitable,at_risk&limit=500")
    assert {r["status"] for r in body["customers"]} <= {"unprofitable", "at_risk"}
    assert len(body["customers"]) == body["total"] == statuses["unprofitable"] + statuses["at_risk"]

    # recent alerts per customer (the last N kept in state) == the alerts topic
    sent = alerts_per_customer(kafka_bootstrap, settings)
    assert sent, "the stream raised no alerts: nothing to compare"
    kept = settings.recent_alerts_kept
    for cid in customers:
        body = ok(f"{a}/customers/{cid}/alerts")
        assert body == {"customer_id": cid, "alerts": sent.get(cid, [])[-kept:][::-1]}, cid
    newest = query.newest_alerts([x for v in sent.values() for x in v], 5)
    assert ok(f"{b}/alerts?limit=5")["alerts"] == newest

    # 404s, as JSON, from the owner and from the other worker
    for base in bases:
        status, body = get(f"{base}/customers/no-such-customer")
        assert status == 404 and body["error"]["code"] == "unknown_customer"
        status, body = get(f"{base}/customers/no-such-customer/alerts")
        assert status == 404 and body["error"]["code"] == "unknown_customer"
    status, body = get(f"{a}/no/such/route")
    assert status == 404 and body["error"]["code"] == "not_found"

    # bad parameters say what is wrong
    any_cid = sorted(customers)[0]
    for path, word in [
        ("/customers?limit=0", "limit"),
        ("/customers?status=rich", "status"),
        ("/customers?sort=price", "sort"),
        ("/customers?cursor=garbage", "cursor"),
        ("/customers?colour=red", "colour"),
        (f"/customers/{any_cid}/alerts?limit=many", "limit"),
        ("/alerts?limit=-1", "limit"),
    ]:
        status, body = get(a + path)
        assert status == 400 and word in body["error"]["message"], (path, body)

    # the token: every route but the probes and /metrics
    for path in (
        "/",
        "/customers",
        f"/customers/{any_cid}",
        f"/customers/{any_cid}/alerts",
        "/alerts",
        "/internal/customers",
        "/internal/alerts",
    ):
        for token in (None, "wrong"):
            status, body = get(a + path, token=token)
            assert status == 401 and body["error"]["code"] == "unauthorized", (path, token)
    for path in ("/health", "/ready", "/metrics"):
        status, _ = get(a + path, token=None)
        assert status == 200, path
    status, metrics = get(a + "/metrics", token=None)
    assert "profitwatch_input_records_total{" in metrics
    status, page = get(f"{a}/?access_token={TOKEN}", token=None)
    assert status == 200 and "<html" in page.lower()

    # a worker that does not answer makes a list a 503, never a silently partial list …
    workers[1].kill9()
    status, body = get(f"{a}/customers?limit=500")
    assert status == 503 and body["error"]["code"] == "unavailable", body
    # … and once the group has rebalanced, the survivor answers for every customer
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = get(f"{a}/customers?limit=500")
        if status == 200 and {r["customer_id"] for r in body["customers"]} == customers:
            break
        time.sleep(1.0)
    assert status == 200 and len(body["customers"]) == len(customers), (status, body)
    for cid in sorted(customers):
        assert ok(f"{a}/customers/{cid}") == snapshots[cid], cid
