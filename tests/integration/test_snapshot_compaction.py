"""The snapshot topic is compacted: once the log cleaner has run, it holds one record per
customer, the table's latest state, and the older snapshots of a customer are gone.
tansu stores `cleanup.policy=compact` and never applies it, so this needs Kafka."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.broker import free_port
from streams.produce import to_kafka
from tests.integration.flow import renamed, stream
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import end_offsets, produce, read_topic, wait_until_consumed

FILLER = "compaction-filler"
ROLL_MS = 500


def _keys(bootstrap: str, topic: str) -> Counter[str]:
    return Counter(
        r.key.decode() for r in read_topic(bootstrap, topic, idle_s=1.0, timeout_s=30) if r.key
    )


@pytest.mark.timeout(360)
def test_the_snapshot_topic_compacts_to_the_tables_latest_states(
    kafka_bootstrap: str, broker_kind: str, service: Any, tmp_path: Path
) -> None:
    if broker_kind == "tansu":
        pytest.skip("tansu never compacts: this is what it could not test")
    env, settings, workers = service
    topic, n = settings.topics.snapshots, settings.partitions
    # Segments roll on the first append 500 ms after a segment began, and every closed
    # segment is worth cleaning: the cleaner compacts all but each partition's newest.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="profitwatch-tests")
    resource = ConfigResource(
        ConfigResourceType.TOPIC,
        topic,
        configs={
            "cleanup.policy": "compact",
            "segment.ms": str(ROLL_MS),
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
        },
    )
    try:
        # The broker checks the names itself. kafka-python's own check first describes
        # the topic, and a topic created a moment ago can describe as empty on a busy
        # broker, which it took for four unknown names (seen once in CI).
        deadline = time.monotonic() + 30
        while True:
            result = admin.alter_configs([resource], raise_on_unknown=False)["topic"][topic]
            if result == "OK" or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # e.g. the topic not known to the broker yet
        assert result == "OK", result
    finally:
        admin.close()

    records = renamed(stream(customers=30, days=150, seed=23), settings)
    customers = {
        r["value"]["customer_id"]
        for r in records
        if r["topic"] != settings.topics.referrals and isinstance(r["value"], dict)
    }
    port = free_port()
    # A commit (and so a snapshot of every changed customer) each half second.
    env = env | {"PROFITWATCH_COMMIT_INTERVAL_SECONDS": "0.5", "PROFITWATCH_WEB_PORT": str(port)}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(worker)
    worker.start(web=True)
    # In slices with pauses, so a customer's snapshot is written several times; then
    # until the service has consumed everything: it acknowledges a record only once its
    # snapshot is on the broker, so every snapshot is written by then.
    slices = 5
    for i in range(slices):
        chunk = records[i * len(records) // slices : (i + 1) * len(records) // slices]
        produce(kafka_bootstrap, [to_kafka(r) for r in chunk])
        time.sleep(1.5)
    inputs = [*settings.topics.input_kinds(), settings.topics.internal]
    wait_until_consumed(kafka_bootstrap, settings.app_id, inputs, n, timeout_s=180)

    written = sum(end_offsets(kafka_bootstrap, [topic], n).values())
    assert written >= 2 * len(customers), f"{written} snapshots of {len(customers)} customers"
    # Close the segments holding the last snapshots: one more record per partition,
    # appended after the roll time, opens a new segment there.
    time.sleep(2 * ROLL_MS / 1000)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for p in range(n):
            producer.send(topic, key=f"{FILLER}-{p}".encode(), value=b"{}", partition=p)
        producer.flush(30)
    finally:
        producer.close()

    deadline = time.monotonic() + 120
    keys = _keys(kafka_bootstrap, topic)
    while any(c > 1 for c in keys.values()) and time.monotonic() < deadline:
        time.sleep(1.0)
        keys = _keys(kafka_bootstrap, topic)
    older = {k: c for k, c in keys.items() if c > 1}
    assert not older, f"older snapshots still there: {dict(list(older.items())[:5])}"
    assert set(keys) == customers | {f"{FILLER}-{p}" for p in range(n)}
    assert sum(keys.values()) < written  # the cleaner removed records, offsets kept

    compacted = {
        r.key.decode(): json.loads(r.value)
        for r in read_topic(kafka_bootstrap, topic, idle_s=1.0, timeout_s=30)
        if r.key and r.value and not r.key.startswith(FILLER.encode())
    }
    for cid, snapshot in compacted.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/customers/{cid}", timeout=30) as r:
            table = json.loads(r.read())
        assert snapshot == table, cid
