"""CloudEvents through a real worker (contract section 2.10): a tiny stream, one event in
structured mode among plain ones, and the alerts, snapshots and dead letters read back
from the broker with their binary-mode `ce_*` headers."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from models.cloudevents import source_of
from models.deadletter import HEADER_CODE
from streams.produce import to_kafka
from tests.golden import SPEC
from tests.integration.flow import renamed
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import Record, produce, read_topic, wait_until_consumed

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
STRUCTURED = [("content-type", "application/cloudevents+json")]


def headers_of(rec: Record, ce_type: str, source: str) -> dict[str, bytes]:
    h = dict(rec.headers)
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_source"] == source.encode()
    assert h["ce_type"] == ce_type.encode()
    assert h["content-type"] == b"application/json"
    assert uuid.UUID(h["ce_id"].decode())
    assert RFC3339.match(h["ce_time"].decode())
    return h


@pytest.mark.timeout(300)
def test_outputs_carry_cloudevents_headers(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    lines = [json.loads(x) for x in (SPEC / "example-c1.events.jsonl").read_text().splitlines()]
    # e3 in structured mode: the envelope's id and time are not the event's.
    e3 = next(
        n
        for n, r in enumerate(lines)
        if isinstance(r["value"], dict) and r["value"]["event_id"] == "e3"
    )
    lines[e3] = {
        "topic": lines[e3]["topic"],
        "key": "c-1",
        "headers": STRUCTURED,
        "value": {
            "specversion": "1.0",
            "id": "upstream-42",
            "source": "urn:example:crm",
            "type": "com.example.ticket",
            "time": "2030-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": lines[e3]["value"],
        },
    }
    # ... and an envelope of another CloudEvents version: a dead letter.
    lines.append(
        {
            "topic": "orders",
            "key": "c-1",
            "headers": STRUCTURED,
            "value": {"specversion": "0.3", "id": "x", "source": "s", "type": "t", "data": {}},
        }
    )
    records = renamed(lines, settings)

    # Produced before the worker starts (a backfill): every record is on the broker, so
    # the worker applies them in event-time order (section 9.6) and raises the
    # example's alerts; sent to a running worker in one burst, a later ticket can be
    # applied before an invoice that has not reached the worker yet.
    produce(kafka_bootstrap, [to_kafka(r) for r in records])
    env = env | {"PROFITWATCH_COMMIT_INTERVAL_SECONDS": "0.5"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    workers.append(worker)
    worker.start()
    inputs = [*settings.topics.input_kinds(), settings.topics.internal]
    wait_until_consumed(kafka_bootstrap, settings.app_id, inputs, settings.partitions, 120)
    source = source_of(settings.app_id)

    # Alerts: the example's two, the first twice (the file re-sends e5: a duplicate).
    alerts = read_topic(kafka_bootstrap, settings.topics.alerts, expected=3, timeout_s=60)
    kinds = []
    for rec in alerts:
        alert = json.loads(rec.value or b"")
        h = headers_of(rec, f"com.profitwatch.alert.{alert['kind']}", source)
        assert h["ce_id"] == alert["alert_id"].encode()
        assert h["ce_time"] == alert["as_of"].encode()
        assert h["ce_subject"] == b"c-1"
        kinds.append(alert["kind"])
    assert kinds == ["at_risk", "at_risk", "became_unprofitable"]
    assert alerts[0].headers == alerts[1].headers  # the re-sent alert: the same event

    # Snapshots: the structured e3 was applied like the plain events around it.
    snaps = read_topic(kafka_bootstrap, settings.topics.snapshots, idle_s=2.0, timeout_s=60)
    assert snaps
    ids = set()
    for rec in snaps:
        snap = json.loads(rec.value or b"")
        h = headers_of(rec, "com.profitwatch.snapshot", source)
        assert h["ce_time"] == snap["as_of"].encode() and h["ce_subject"] == b"c-1"
        ids.add((h["ce_id"], rec.value))
    assert json.loads(snaps[-1].value or b"")["events_applied"] == 6
    assert len({i for i, _ in ids}) == len({v for _, v in ids})  # one id per snapshot value

    # Dead letters: the malformed record and the old-version envelope.
    letters = read_topic(kafka_bootstrap, settings.topics.dlq, expected=2, timeout_s=60)
    codes = []
    for rec in letters:
        letter = json.loads(rec.value or b"")
        h = headers_of(rec, "com.profitwatch.deadletter", source)
        assert rec.headers[0][0] == HEADER_CODE  # KIP-1034's headers come first
        assert h["ce_time"] == letter["received_at"].encode()
        codes.append(letter["error"]["code"])
    assert sorted(codes) == ["malformed_json", "schema_violation"]
    assert len({dict(r.headers)["ce_id"] for r in letters}) == 2
