"""`profitwatch demo` (what `make run` runs): the real service on an embedded broker.

An embedded tansu broker, one `profitwatch worker` process, and the generator playing
a year of business into the input topics in a few minutes; alerts are printed as the
worker emits them, with a progress line. Ctrl-C stops everything cleanly, by pid.

The sweep is off here: the generated year is history replayed fast, and a sweep at
"now" would age all of it out of the window at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.generator import GeneratorConfig, generate_records
from models.settings import Settings
from streams.broker import EmbeddedBroker, free_port
from streams.console import print_alert, use_colour
from streams.produce import to_kafka
from streams.topics import ensure_topics

READY = "[^Worker]: Ready"


def _worker_env(bootstrap: str, data_dir: Path, web_port: int) -> dict[str, str]:
    return os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROFITWATCH_BROKER_KIND": "tansu",
        "PROFITWATCH_DATA_DIR": str(data_dir),
        "PROFITWATCH_SWEEP_INTERVAL_SECONDS": "0",
        "PROFITWATCH_WEB_PORT": str(web_port),
        "PYTHONUNBUFFERED": "1",
    }


def _web_port(settings: Settings) -> int:
    """The configured port (6066) unless something else holds it: then any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((settings.web_bind, settings.web_port))
            return settings.web_port
        except OSError:
            return free_port(settings.web_bind)


def dashboard_url(settings: Settings, port: int) -> str:
    url = f"http://{settings.web_bind}:{port}/"
    if settings.api_token is not None:
        url += f"?access_token={settings.api_token.get_secret_value()}"
    return url


class _Producer(threading.Thread):
    """Plays the generated records into Kafka, paced to last `seconds`."""

    def __init__(self, bootstrap: str, records: list[dict[str, Any]], seconds: float) -> None:
        super().__init__(daemon=True, name="demo-producer")
        self.bootstrap, self.records, self.seconds = bootstrap, records, seconds
        self.sent = 0
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20, acks=1)
        try:
            started = time.monotonic()
            pace = self.seconds / max(len(self.records), 1)
            for i, rec in enumerate(self.records):
                if self.stop_event.is_set():
                    break
                topic, key, value, headers = to_kafka(rec)
                producer.send(topic, key=key, value=value, headers=headers)
                self.sent = i + 1
                ahead = started + (i + 1) * pace - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(30)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            producer.close(5)


def run_demo(
    settings: Settings, *, customers: int, days: int, seed: int, seconds: float, keep: bool
) -> int:
    out = sys.stdout
    records = list(generate_records(GeneratorConfig(customers=customers, days=days, seed=seed)))
    workdir = Path(tempfile.mkdtemp(prefix="profitwatch-demo-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    producer: _Producer | None = None
    stats: Counter[str] = Counter()
    latest_status: dict[str, str] = {}
    try:
        broker.start()
        web_port = _web_port(settings)
        env = _worker_env(broker.bootstrap, workdir / "data", web_port)
        run_settings = settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap, "broker_kind": "tansu"}
        )
        ensure_topics(run_settings)
        print(f"broker: embedded tansu at {broker.bootstrap} (pid {broker.pid})", file=out)
        log_path = workdir / "worker.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "-l", "info"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        while READY not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() - started > 60:
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                print("the worker did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(
            f"worker: pid {worker.pid}, ready in {time.monotonic() - started:.1f} s "
            f"(log {log_path})",
            file=out,
        )
        print(f"dashboard: {dashboard_url(settings, web_port)}", file=out)
        print(
            f"playing {len(records)} events of {customers} customers over {days} days "
            f"in about {seconds:.0f} s — Ctrl-C stops\n",
            file=out,
        )
        producer = _Producer(broker.bootstrap, records, seconds)
        producer.start()
        _follow(run_settings, broker.bootstrap, producer, len(records), stats, latest_status)
        if producer.error is not None:
            raise producer.error
        if sys.stdin.isatty():
            # Interactive: leave the dashboard up to explore the final state.
            print(
                f"stream done; the dashboard stays at {dashboard_url(settings, web_port)} "
                "— Ctrl-C stops",
                file=out,
            )
            while worker.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", file=out)
    finally:
        if producer is not None:
            producer.stop_event.set()
            producer.join(10)
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
        broker.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    by_status = Counter(latest_status.values())
    print(
        f"\n{stats['alerts']} alerts ({stats['became_unprofitable']} became unprofitable, "
        f"{stats['at_risk']} at risk, {stats['recovered']} recovered), "
        f"{stats['dlq']} records dead-lettered",
        file=out,
    )
    print(f"customers by status: {dict(sorted(by_status.items()))}", file=out)
    return 0


def _follow(
    settings: Settings,
    bootstrap: str,
    producer: _Producer,
    total: int,
    stats: Counter[str],
    latest_status: dict[str, str],
) -> None:
    """Print alerts as they arrive and a progress line, until the stream is done."""
    t = settings.topics
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tty = use_colour(sys.stdout)
    try:
        tps = [
            TopicPartition(name, p)
            for name in (t.alerts, t.snapshots, t.dlq)
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_output = last_progress = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=250)
            for records in batch.values():
                for r in records:
                    last_output = time.monotonic()
                    value = json.loads(r.value)
                    if r.topic == t.alerts:
                        if tty:
                            sys.stdout.write("\r\033[K")
                        print_alert(value)
                        stats["alerts"] += 1
                        stats[value["kind"]] += 1
                    elif r.topic == t.snapshots:
                        stats["snapshots"] += 1
                        latest_status[value["customer_id"]] = value["status"]
                    else:
                        stats["dlq"] += 1
            line = (
                f"produced {producer.sent}/{total} · snapshots {stats['snapshots']} · "
                f"alerts {stats['alerts']} · DLQ {stats['dlq']} · "
                f"customers {len(latest_status)}"
            )
            if tty:
                sys.stdout.write("\r\033[K" + line)
                sys.stdout.flush()
            elif time.monotonic() - last_progress >= 10:
                print(line)
                last_progress = time.monotonic()
            done = not producer.is_alive()
            if done and time.monotonic() - last_output > 5:
                if tty:
                    sys.stdout.write("\r\033[K" + line + "\n")
                return
    finally:
        consumer.close()
