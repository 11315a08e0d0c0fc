"""Soak: one worker under a steady stream for a long time, sampled every 10 s, plotted.

    python -m bench.soak [--minutes 30] [--rate 500] [--customers 50000] [--broker kafka]
                         [--out docs/soak.png]

A generated stream of `--customers` customers (the generator's event-time order, with
its jitter, duplicates and bad records) is produced at `--rate` records/s into a
caught-up worker on a broker started for the run (Apache Kafka when Java is here), the
sweep on (every 60 s). Every 10 s: the worker's RSS (/proc), held records and the mean
processing time per record in the interval (its /metrics), and the consumer lag (end
minus committed offsets of the input topics). The samples go to a JSON file next to the
PNG. Flat after warm-up is the bar. Only 127.0.0.1; everything started is stopped by
pid, also on failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka.admin import KafkaAdminClient

from bench.e2e import ROOT, Proc, env_for, run_settings
from models.generator import GeneratorConfig, generate_records
from models.settings import Settings, Topics
from streams.apache_kafka import kafka_available
from streams.broker import BrokerKind, free_port, make_broker
from streams.produce import to_kafka
from streams.topics import ensure_topics

SAMPLE_S = 10.0
SWEEP_S = 60


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    tps = [KafkaTP(t, p) for t in topics for p in range(partitions)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-soak")
    try:
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets(group)[group]
    finally:
        consumer.close()
        admin.close()
    got = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
    return sum(max(0, end - got.get(tp, 0)) for tp, end in ends.items())


class Producer(threading.Thread):
    """Sends the stream at a steady rate until told to stop or the stream ends."""

    def __init__(self, bootstrap: str, settings: Settings, cfg: GeneratorConfig, rate: float):
        super().__init__(daemon=True)
        self.bootstrap, self.cfg, self.rate = bootstrap, cfg, rate
        self.names = dict(zip(Topics().input_kinds(), settings.topics.input_kinds(), strict=True))
        self.sent = 0
        self.stop_at = float("inf")

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks=1)
        try:
            started = time.monotonic()
            for rec in generate_records(self.cfg):
                if time.monotonic() >= self.stop_at:
                    break
                wait = started + self.sent / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                topic, key, value, headers = to_kafka(rec)
                producer.send(self.names[topic], value=value, key=key, headers=headers or None)
                self.sent += 1
            producer.flush(60)
        finally:
            producer.close()


def run(kind: BrokerKind, minutes: float, rate: float, customers: int, out: Path) -> int:
    unique = uuid.uuid4().hex[:8]
    # Enough history for the whole run at this rate: the generator gives ~240 records
    # per customer-year on average but fewer in a population's first weeks (customers
    # join over time), so twice that; the producer stops at the time limit anyway.
    days = max(30, int(rate * minutes * 60 / customers / 240 * 365 * 2.5) + 1)
    cfg = GeneratorConfig(customers=customers, days=days, seed=5)
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="profitwatch-soak-") as tmp, make_broker(kind) as b:
        settings = run_settings(b.bootstrap, unique, "soak", Path(tmp) / "data", 4, kind)
        ensure_topics(settings)
        port = free_port()
        env = env_for(settings) | {
            "PROFITWATCH_WEB_PORT": str(port),
            "PROFITWATCH_SWEEP_INTERVAL_SECONDS": str(SWEEP_S),
        }
        argv = [sys.executable, "-m", "streams.cli", "worker", "-l", "warn"]
        worker = Proc(argv, env, Path(tmp) / "worker.log", cwd=ROOT)
        producer = Producer(b.bootstrap, settings, cfg, rate)
        inputs = list(settings.topics.input_kinds())
        try:
            worker.start()
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                    break
                except OSError:
                    if not worker.alive() or time.monotonic() > deadline:
                        raise worker.died("soak") from None
                    time.sleep(0.5)
            started = time.monotonic()
            producer.stop_at = started + minutes * 60
            producer.start()
            last_sum = last_count = 0.0
            while time.monotonic() < producer.stop_at:
                time.sleep(SAMPLE_S)
                if not worker.alive():
                    raise worker.died("soak")
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
                s = _metric(text, "profitwatch_processing_seconds_sum")
                c = _metric(text, "profitwatch_processing_seconds_count")
                assert worker.proc is not None
                samples.append(
                    {
                        "t_s": round(time.monotonic() - started, 1),
                        "sent": producer.sent,
                        "rss_mib": round(_rss_mib(worker.proc.pid), 1),
                        "held": _metric(text, "profitwatch_held_records"),
                        "lag": _lag(b.bootstrap, settings.app_id, inputs, settings.partitions),
                        "processing_us": round((s - last_sum) / (c - last_count) * 1e6, 1)
                        if c > last_count
                        else None,
                    }
                )
                last_sum, last_count = s, c
                print(json.dumps(samples[-1]), flush=True)
            producer.join(60)
        finally:
            producer.stop_at = 0
            worker.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(samples, indent=1) + "\n")
    plot(samples, out, f"{customers} customers, {rate:.0f} records/s, {minutes:.0f} min, {kind}")
    summary(samples)
    return 0


def plot(samples: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    series = (
        ("rss_mib", "worker RSS (MiB)"),
        ("held", "records held for their turn"),
        ("lag", "consumer lag (records)"),
        ("processing_us", "processing per record (µs, mean per 10 s)"),
    )
    for ax, (key, label) in zip(axes, series, strict=True):
        ax.plot(t, [s[key] for s in samples], lw=1)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"profitwatch soak: {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def summary(samples: list[dict[str, Any]]) -> None:
    warm = [s for s in samples if s["t_s"] >= 300] or samples
    first, last = warm[0], warm[-1]
    print(
        f"soak: {len(samples)} samples; after 5 min warm-up RSS {first['rss_mib']} -> "
        f"{last['rss_mib']} MiB (max {max(s['rss_mib'] for s in warm)}), lag max "
        f"{max(s['lag'] for s in warm)}, held max {max(s['held'] for s in warm)}, "
        f"processing {first['processing_us']} -> {last['processing_us']} µs; "
        f"records sent {samples[-1]['sent'] if samples else 0}"
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--customers", type=int, default=50_000)
    p.add_argument("--broker", choices=["kafka", "tansu"], default=None)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "soak.png")
    args = p.parse_args()
    kind: BrokerKind = args.broker or ("kafka" if kafka_available() else "tansu")
    return run(kind, args.minutes, args.rate, args.customers, args.out)


if __name__ == "__main__":
    sys.exit(main())
