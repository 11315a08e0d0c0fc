"""`profitwatch tail`: output topics printed as replay-format lines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from models.settings import Settings
from streams.kafka_security import kafka_python_config


def as_line(topic: str, key: bytes | None, value: bytes | None) -> str:
    parsed: Any
    try:
        parsed = json.loads(value) if value is not None else None
    except ValueError:
        parsed = value.decode("utf-8", "replace") if value is not None else None
    k = key.decode("utf-8", "replace") if key is not None else None
    return json.dumps({"topic": topic, "key": k, "value": parsed}, ensure_ascii=False)


def tail(
    settings: Settings,
    topics: list[str],
    *,
    from_beginning: bool = False,
    idle_timeout_s: float | None = None,
    max_records: int | None = None,
) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        enable_auto_commit=False,
        group_id=None,
        **kafka_python_config(settings.kafka),
    )
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        seen, last = 0, time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    sys.stdout.write(as_line(r.topic, r.key, r.value) + "\n")
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return 0
            if batch:
                sys.stdout.flush()
                last = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()
