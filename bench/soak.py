"""Soak: one worker under a steady stream for a long time, sampled every 10 s, plotted.

    python -m bench.soak [--minutes 30] [--rate 500] [--customers 50000] [--broker kafka]
                         [--warmup-days 187] [--out docs/soak.png]

A generated stream of `--customers` customers (the generator's event-time order, with
its jitter, duplicates and bad records) goes to one worker on a broker started for the
run (Apache Kafka when Java is here), the sweep on (every 60 s), in two phases:

1. warm-up: the stream's first `--warmup-days` of event time as a backlog, as fast as
   the worker takes it, until it has caught up. A customer's state holds two windows
   of day buckets and applied ids (`models.ledger`), so only after 2 x window_days of
   history does it stop growing: before that, a run measures states filling, not the
   service's steady memory;
2. steady: the rest at `--rate` records/s for `--minutes`.

Every 10 s: the worker's RSS (/proc), held records and the mean processing time per
record in the interval (its /metrics), and the consumer lag (end minus committed
offsets of the input topics). The samples go to a JSON file next to the PNG. Flat in
the steady phase is the bar. Only 127.0.0.1; everything started is stopped by pid,
also on failure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka.admin import KafkaAdminClient

from bench.e2e import ROOT, Proc, env_for, exit_on_sigterm, run_settings
from models.decode import Decoder
from models.errors import RejectedRecord
from models.generator import GeneratorConfig, generate_records
from models.settings import Settings, Topics
from models.timeutil import now_us, to_us
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


def _event_time(decoder: Decoder, topic: str, value: bytes | None) -> int | None:
    """A record's event time as the service judges it; None for one it rejects (a bad
    record's timestamp, e.g. one far in the future, says nothing about the stream's)."""
    try:
        return decoder.decode_at(topic, value or b"", now_us=now_us())[1]
    except RejectedRecord:
        return None


class Producer(threading.Thread):
    """Sends the stream before `steady_from` (event time) at once, then, once told to
    `go`, the rest at a steady rate until told to stop or the stream ends."""

    def __init__(
        self,
        bootstrap: str,
        settings: Settings,
        cfg: GeneratorConfig,
        rate: float,
        steady_from: datetime,
    ):
        super().__init__(daemon=True)
        self.bootstrap, self.cfg, self.rate, self.steady_from = bootstrap, cfg, rate, steady_from
        self.names = dict(zip(Topics().input_kinds(), settings.topics.input_kinds(), strict=True))
        self.sent = 0
        self.backlog = 0  # records sent before the steady phase
        self.backlog_sent = threading.Event()
        self.go = threading.Event()
        self.stop_at = float("inf")

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks=1)
        try:
            records = generate_records(self.cfg)
            first_steady: dict[str, Any] | None = None
            decoder, steady_from = Decoder(Settings()), to_us(self.steady_from)
            for rec in records:
                at = _event_time(decoder, rec["topic"], to_kafka(rec)[2])
                if at is not None and at >= steady_from:
                    first_steady = rec
                    break
                self._send(producer, rec)
            producer.flush(300)
            self.backlog = self.sent
            self.backlog_sent.set()
            self.go.wait()
            started = time.monotonic()
            steady = itertools.chain([first_steady] if first_steady else [], records)
            for n, rec in enumerate(steady):
                if time.monotonic() >= self.stop_at:
                    break
                wait = started + n / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._send(producer, rec)
            producer.flush(60)
        finally:
            producer.close()

    def _send(self, producer: KafkaProducer, rec: dict[str, Any]) -> None:
        topic, key, value, headers = to_kafka(rec)
        producer.send(self.names[topic], value=value, key=key, headers=headers or None)
        self.sent += 1


class Sampler:
    """One sample of the worker every call: RSS, held, lag, processing per record."""

    def __init__(self, worker: Proc, port: int, bootstrap: str, settings: Settings) -> None:
        self.worker, self.port, self.bootstrap, self.settings = worker, port, bootstrap, settings
        self.inputs = list(settings.topics.input_kinds())
        self.partitions = settings.partitions
        self.last_sum = self.last_count = 0.0
        self.began = time.monotonic()
        self.stalls = 0  # samples whose /metrics did not answer within 10 s

    def sample(self, phase: str, sent: int) -> dict[str, Any]:
        if not self.worker.alive():
            raise self.worker.died("soak")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError as exc:  # a busy event loop: a finding to keep, not a crash
            self.stalls += 1
            print(f"soak: /metrics did not answer ({exc!r})", flush=True)
            text = None
        if text is None:
            assert self.worker.proc is not None
            return {
                "t_s": round(time.monotonic() - self.began, 1),
                "phase": phase,
                "sent": sent,
                "rss_mib": round(_rss_mib(self.worker.proc.pid), 1),
                "held": None,
                "lag": _lag(self.bootstrap, self.settings.app_id, self.inputs, self.partitions),
                "processing_us": None,
                "stalled": True,
            }
        s = _metric(text, "profitwatch_processing_seconds_sum")
        c = _metric(text, "profitwatch_processing_seconds_count")
        assert self.worker.proc is not None
        out = {
            "t_s": round(time.monotonic() - self.began, 1),
            "phase": phase,
            "sent": sent,
            "rss_mib": round(_rss_mib(self.worker.proc.pid), 1),
            "held": _metric(text, "profitwatch_held_records"),
            "lag": _lag(
                self.bootstrap, self.settings.app_id, self.inputs, self.settings.partitions
            ),
            "processing_us": round((s - self.last_sum) / (c - self.last_count) * 1e6, 1)
            if c > self.last_count
            else None,
        }
        self.last_sum, self.last_count = s, c
        print(json.dumps(out), flush=True)
        return out


def run(
    kind: BrokerKind,
    minutes: float,
    rate: float,
    customers: int,
    warmup_days: int,
    window_days: int,
    out: Path,
) -> int:
    unique = uuid.uuid4().hex[:8]
    # Enough history for the steady phase at this rate: the generator gives ~240
    # records per customer-year on average, so half as much again; the producer stops
    # at the time limit anyway.
    steady_days = int(rate * minutes * 60 / customers / 240 * 365 * 1.5) + 1
    cfg = GeneratorConfig(customers=customers, days=warmup_days + steady_days, seed=5)
    steady_from = cfg.start + timedelta(days=warmup_days)
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="profitwatch-soak-") as tmp, make_broker(kind) as b:
        settings = run_settings(b.bootstrap, unique, "soak", Path(tmp) / "data", 4, kind)
        ensure_topics(settings)
        port = free_port()
        env = env_for(settings) | {
            "PROFITWATCH_WEB_PORT": str(port),
            "PROFITWATCH_SWEEP_INTERVAL_SECONDS": str(SWEEP_S),
            "PROFITWATCH_WINDOW_DAYS": str(window_days),
        }
        argv = [sys.executable, "-m", "streams.cli", "worker", "-l", "warn"]
        worker = Proc(argv, env, Path(tmp) / "worker.log", cwd=ROOT)
        producer = Producer(b.bootstrap, settings, cfg, rate, steady_from)
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
            sampler = Sampler(worker, port, b.bootstrap, settings)
            producer.start()
            # 1. Warm-up: the backlog, until all of it is sent and committed.
            while True:
                time.sleep(SAMPLE_S)
                samples.append(sampler.sample("warm-up", producer.sent))
                if producer.backlog_sent.is_set() and samples[-1]["lag"] == 0:
                    break
            # 2. Steady: the rest at the rate, for the minutes asked.
            producer.stop_at = time.monotonic() + minutes * 60
            producer.go.set()
            while time.monotonic() < producer.stop_at:
                time.sleep(SAMPLE_S)
                samples.append(sampler.sample("steady", producer.sent))
            producer.join(60)
        finally:
            producer.stop_at = 0
            producer.go.set()
            worker.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(samples, indent=1) + "\n")
    title = (
        f"{customers} customers, window {window_days} d; warm-up {warmup_days} d "
        f"({producer.backlog} records), then {rate:.0f}/s for {minutes:.0f} min; {kind}"
    )
    plot(samples, out, title)
    summary(samples, producer.backlog)
    print(f"soak: {sampler.stalls} samples without an answer from /metrics")
    return 0


def plot(samples: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    warm_end = max((s["t_s"] / 60 for s in samples if s["phase"] == "warm-up"), default=0.0)
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    series = (
        ("rss_mib", "worker RSS (MiB)"),
        ("held", "records held for their turn"),
        ("lag", "consumer lag (records)"),
        ("processing_us", "processing per record (µs, mean per 10 s)"),
    )
    for ax, (key, label) in zip(axes, series, strict=True):
        ax.plot(t, [float("nan") if s[key] is None else s[key] for s in samples], lw=1)
        ax.axvspan(0, warm_end, color="0.9", zorder=0)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].text(warm_end / 2, 0, "warm-up backlog", ha="center", va="bottom", fontsize=8)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"profitwatch soak: {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def summary(samples: list[dict[str, Any]], backlog: int) -> None:
    steady = [s for s in samples if s["phase"] == "steady"]
    if not steady:
        print(f"soak: no steady samples ({len(samples)} in warm-up)")
        return
    t0 = steady[0]["t_s"]
    thirds = [
        [s for s in steady if k * 600 <= s["t_s"] - t0 < (k + 1) * 600]
        for k in range(int((steady[-1]["t_s"] - t0) // 600) + 1)
    ]
    for k, part in enumerate(p for p in thirds if p):
        us = sorted(s["processing_us"] for s in part if s["processing_us"] is not None)
        print(
            f"soak steady {k * 10}-{k * 10 + 10} min: RSS {part[0]['rss_mib']} -> "
            f"{part[-1]['rss_mib']} MiB (max {max(s['rss_mib'] for s in part)}), "
            f"processing median {us[len(us) // 2] if us else None} µs, "
            f"lag max {max(s['lag'] for s in part)}, held max {max(s['held'] or 0 for s in part)}"
        )
    warm = [s for s in samples if s["phase"] == "warm-up"]
    print(
        f"soak: warm-up {backlog} records in {warm[-1]['t_s'] if warm else 0} s, "
        f"RSS at its end {warm[-1]['rss_mib'] if warm else None} MiB; steady "
        f"{steady[-1]['sent'] - backlog} records in {steady[-1]['t_s'] - t0:.0f} s"
    )


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--customers", type=int, default=50_000)
    p.add_argument("--broker", choices=["kafka", "tansu"], default=None)
    p.add_argument("--window-days", type=int, default=Settings().window_days)
    p.add_argument(
        "--warmup-days",
        type=int,
        default=None,
        help="event time sent as a backlog first (default: two windows and a week)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "soak.png")
    args = p.parse_args()
    exit_on_sigterm()
    kind: BrokerKind = args.broker or ("kafka" if kafka_available() else "tansu")
    warmup = args.warmup_days if args.warmup_days is not None else 2 * args.window_days + 7
    return run(kind, args.minutes, args.rate, args.customers, warmup, args.window_days, args.out)


if __name__ == "__main__":
    sys.exit(main())
