"""A broker outage mid-stream: Apache Kafka (its data on disk) is stopped for 20 s while
a worker works through a backlog, then started again. The worker recovers by itself
(the same process: no restart), `/ready` reports the outage while it lasts, and the
outcome is still `replay`'s. Needs a broker of our own, so Apache Kafka from Maven."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streams.apache_kafka import ApacheKafkaBroker, kafka_available
from streams.broker import free_port
from streams.produce import send_all, to_kafka
from streams.topics import ensure_topics
from tests.integration.expectations import (
    Expected,
    check_equal,
    generated,
    metric,
    settled,
    split_referrals,
    wait_for_progress,
)
from tests.integration.worker import WorkerProcess, service_env, settings_from
from tests.kafka_helpers import committed_total, end_offsets, wait_until_consumed

OUTAGE_S = 20.0


def _ready(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.skipif(not kafka_available(), reason="needs Java >= 17 and Maven for a broker")
@pytest.mark.timeout(600)
def test_the_worker_rides_out_a_broker_outage(unique: str, tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(port=free_port(), data_dir=tmp_path / "kafka")
    workers: list[WorkerProcess] = []
    try:
        broker.start()
        env = service_env(broker.bootstrap, "kafka", unique, tmp_path / "data")
        settings = settings_from(env)
        ensure_topics(settings)
        inputs = sorted(settings.topics.input_kinds())
        n = settings.partitions
        records = generated(200, 170, 53, settings)
        ref, rest = split_referrals(records, settings)
        exp = Expected(settings).phase(ref).phase(rest)
        workers.append(settled(broker.bootstrap, env, settings, tmp_path / "w0.log", ref))
        send_all(broker.bootstrap, (to_kafka(r) for r in rest))
        total = sum(end_offsets(broker.bootstrap, inputs, n).values())

        def committed() -> int:
            return committed_total(broker.bootstrap, settings.app_id, inputs)

        port = free_port()
        env = env | {"PROFITWATCH_WEB_PORT": str(port), "PROFITWATCH_COMMIT_INTERVAL_SECONDS": "1"}
        worker = WorkerProcess(env, tmp_path / "worker.log")
        workers.append(worker)
        worker.start(web=True)
        stopped_at = wait_for_progress(committed, total)
        assert stopped_at < total, "the backlog was done before the outage"

        broker.stop()
        down = time.monotonic()
        during: list[tuple[int, dict[str, object]]] = []
        while time.monotonic() - down < OUTAGE_S:
            during.append(_ready(port))
            assert worker.proc is not None and worker.proc.poll() is None, "worker died"
            time.sleep(0.5)
        broker.start()

        wait_until_consumed(broker.bootstrap, settings.app_id, inputs, n, timeout_s=300)
        # The order's counters, for a failure's story: an outage must not end a wait.
        order = {m: metric(port, m) for m in ("profitwatch_order_enforced_total",)}
        print(f"\noutage: order counters {order}")
        compared = check_equal(broker.bootstrap, settings, exp)
        assert compared >= 150
        assert worker.proc is not None and worker.proc.poll() is None  # the same process
        assert worker.log_text().count("[^Worker]: Ready") == 1
        unready = [body for status, body in during if status == 503]
        assert unready, f"/ready never said 503 during the outage: {during[:3]}"
        assert all(status in (200, 503) for status, _ in during), during
        assert _ready(port)[0] == 200
        print(
            f"\noutage: {total} input records, broker down {OUTAGE_S:.0f} s at {stopped_at}; "
            f"/ready 503 for {len(unready)} of {len(during)} probes ({unready[0]}); "
            f"alerts of {compared} customers compared"
        )
    finally:
        for w in workers:
            w.stop()
        broker.stop()
