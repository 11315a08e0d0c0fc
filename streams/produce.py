"""`profitwatch produce`: replay-format records into Kafka (backfills, tests, demos).

The key is the record's `key` when given, else the customer id from the value (what
upstream producers are asked to do), else none: `models.partitioner.record_key`, the
rule replay partitions by.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jiter
from kafka import KafkaProducer

from models.deadletter import dump_json
from models.partitioner import record_key
from models.settings import KafkaSecurity, Settings
from streams.kafka_security import kafka_python_config

Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]


def to_kafka(rec: dict[str, Any]) -> Record:
    """One replay-format record -> (topic, key, value bytes, headers)."""
    value = rec["value"]
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
    else:
        raw = dump_json(value).encode("utf-8")
    key = record_key(rec)
    headers = rec.get("headers")
    hdrs = None
    if isinstance(headers, dict):
        hdrs = [(str(k), str(v).encode("utf-8")) for k, v in headers.items()]
    elif isinstance(headers, list):
        hdrs = [(str(k), str(v).encode("utf-8")) for k, v in headers]
    return rec["topic"], (key.encode("utf-8") if isinstance(key, str) else None), raw, hdrs


def read_lines(lines: Iterable[bytes]) -> Iterator[Record]:
    for line in lines:
        if line.strip():
            yield to_kafka(jiter.from_json(line, float_mode="decimal"))


def send_all(
    bootstrap: str,
    records: Iterable[Record],
    *,
    pace_s: float = 0.0,
    security: KafkaSecurity | None = None,
) -> int:
    """Send records; with `pace_s` each one is acknowledged before the next is sent.
    `security`: the cluster's SASL/TLS settings (PLAINTEXT without)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        linger_ms=5,
        acks=1,
        retries=5,
        **kafka_python_config(security or KafkaSecurity()),
    )
    n = 0
    try:
        for topic, key, value, headers in records:
            # An unkeyed record goes to partition 0, where replay puts it (contract
            # section 9), not wherever the client's sticky partitioner would.
            fut = producer.send(
                topic, key=key, value=value, headers=headers, partition=None if key else 0
            )
            n += 1
            if pace_s > 0:
                fut.get(timeout=30)
                time.sleep(pace_s)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return n


def produce_file(path: str | Path, settings: Settings, *, pace_s: float = 0.0) -> int:
    bootstrap, security = settings.kafka_bootstrap_servers, settings.kafka
    if str(path) == "-":
        return send_all(bootstrap, read_lines(sys.stdin.buffer), pace_s=pace_s, security=security)
    with open(path, "rb") as f:
        return send_all(bootstrap, read_lines(f), pace_s=pace_s, security=security)
