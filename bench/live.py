"""Live latency (issue: event-time order): a steady paced stream into a caught-up
worker, event -> alert latency, this revision next to another one (`--baseline`,
e.g. the code before the order of application) in the same run, on each broker
(tansu, and Apache Kafka when Java is here).

    python -m bench.live [--rate 200] [--seconds 45] [--baseline REV] [--brokers tansu,kafka]

Latency is the alert record's timestamp minus the timestamp its trigger record was
produced with (both this machine's clock). Only 127.0.0.1; every process started here
is stopped by its pid, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.e2e import Proc, env_for, exit_on_sigterm, partitions_of, run_settings
from models.generator import GeneratorConfig, generate_records
from models.settings import Settings, Topics
from streams.apache_kafka import kafka_available
from streams.broker import BrokerKind, make_broker
from streams.produce import to_kafka
from streams.topics import ensure_topics


def records(settings: Settings, n: int) -> list[tuple[str, bytes | None, bytes, Any]]:
    names = dict(zip(Topics().input_kinds(), settings.topics.input_kinds(), strict=True))
    out = []
    for rec in generate_records(GeneratorConfig(customers=100, days=365, seed=3)):
        topic, key, value, headers = to_kafka(rec)
        out.append((names[topic], key, value, headers))
        if len(out) == n:
            break
    return out


async def paced(bootstrap: str, recs: list[Any], rate: float) -> dict[str, int]:
    """Produce at `rate` records/s; each event id's produce timestamp (ms)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent: dict[str, int] = {}
    try:
        started = time.monotonic()
        for i, (topic, key, value, headers) in enumerate(recs):
            wait = started + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            ts = int(time.time() * 1000)
            await producer.send(topic, value, key=key, headers=headers, timestamp_ms=ts)
            with contextlib.suppress(ValueError, KeyError, TypeError):  # bad: no alert
                sent[json.loads(value)["event_id"]] = ts
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def alert_latencies(settings: Settings, sent: dict[str, int]) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    out: list[float] = []
    try:
        tps = partitions_of([settings.topics.alerts], settings.partitions)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: set[str] = set()
        idle = time.monotonic()
        while time.monotonic() - idle < 3.0:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for rec in recs:
                    idle = time.monotonic()
                    alert = json.loads(rec.value)
                    trigger = alert.get("trigger_event_id")
                    if alert["alert_id"] in seen or trigger not in sent:
                        continue
                    seen.add(alert["alert_id"])
                    out.append(rec.timestamp - sent[trigger])
    finally:
        await consumer.stop()
    return out


def run_one(
    bootstrap: str,
    role: str,
    tree: Path | None,
    workdir: Path,
    rate: float,
    n: int,
    kind: BrokerKind = "tansu",
) -> dict[str, Any]:
    settings = run_settings(bootstrap, uuid.uuid4().hex[:8], role, workdir / role, 4, kind)
    ensure_topics(settings)
    argv = [sys.executable, "-m", "streams.cli", "worker", "--without-web", "-l", "info"]
    worker = Proc(argv, env_for(settings), workdir / f"{role}.log", cwd=tree)
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while "[^Worker]: Ready" not in worker.tail(100_000):
            if not worker.alive() or time.monotonic() > deadline:
                raise worker.died(role)
            time.sleep(0.2)
        time.sleep(2.0)  # caught up: nothing on its topics yet
        sent = asyncio.run(paced(bootstrap, records(settings, n), rate))
        time.sleep(5.0)
        lat = asyncio.run(alert_latencies(settings, sent))
    finally:
        worker.stop()
    lat.sort()
    if not lat:
        return {"alerts": 0}
    return {
        "alerts": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "max_ms": round(lat[-1], 1),
    }


def main() -> int:
    from bench.__main__ import baseline_tree, machine

    p = argparse.ArgumentParser(prog="python -m bench.live")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=45.0)
    p.add_argument("--baseline", metavar="REV")
    p.add_argument("--brokers", default="tansu,kafka")
    args = p.parse_args()
    exit_on_sigterm()
    n = int(args.rate * args.seconds)
    print(f"machine: {machine()}")
    known: tuple[BrokerKind, ...] = ("tansu", "kafka")
    for kind in (k for k in known if k in args.brokers.split(",")):
        if kind == "kafka" and not kafka_available():
            print("(no Java >= 17 and Maven here: live latency on tansu only)")
            continue
        with tempfile.TemporaryDirectory(prefix="profitwatch-live-") as tmp, make_broker(kind) as b:
            workdir = Path(tmp)
            tree = baseline_tree(args.baseline, workdir) if args.baseline else None
            runs = {"now": run_one(b.bootstrap, "now", None, workdir, args.rate, n, kind)}
            if tree is not None:
                runs[f"baseline {args.baseline}"] = run_one(
                    b.bootstrap, "base", tree, workdir, args.rate, n, kind
                )
            name = "tansu" if kind == "tansu" else f"Apache Kafka {getattr(b, 'version', '')}"
        print(f"\nlive: {n} records at {args.rate:.0f}/s into a caught-up worker ({name})")
        for label, r in runs.items():
            print(f"  {label:<22} " + ", ".join(f"{k} {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
