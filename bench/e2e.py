"""End-to-end benchmark (issue: streaming service): a generated stream through one
`profitwatch worker` on a broker started for the run (tansu, or Apache Kafka from
Maven Central), next to its ceiling and floor. `side_by_side` puts the runs of both
brokers, over the same records, in one table.

1. produce: every record is on the five input topics before any consumer starts;
2. raw: an aiokafka consumer reads them all (assign + seek to beginning, no group);
   the ceiling for a Python consumer here;
3. bare: a Faust agent that only counts events per customer in a rocksdb table
   (bench/bare_counter_app.py, the service's app settings); the framework's floor;
   and the same agent counting in memory, no table: Faust's stream loop alone;
4. service: `python -m streams.cli worker`, the full model, over the same topics;
5. profile: the service once more, cProfile on for a window of input records
   (bench/profiled_worker.py).

Rates are events/s from the first to the last record processed, as seen by the
consumer itself: raw in-process; bare and service through a progress file each worker
writes (bench/bare_counter_app.py, bench/progress_worker.py). The service's outputs are
read afterwards, for their counts and the time until the last one was out.
Only 127.0.0.1; every process started here is stopped by its pid, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from models.generator import GeneratorConfig, generate_records
from models.ledger import REF
from models.replay import Replayer
from models.settings import Settings, Topics
from streams.agents import TABLE_NAME
from streams.apache_kafka import resolve_classpath
from streams.broker import BrokerKind, make_broker
from streams.produce import Record, to_kafka
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
TARGET_EVENTS_PER_S = 3_000  # the first bar, end to end on one worker
OWN_TOPICS = ("internal", "alerts", "snapshots", "dlq")


@dataclass(frozen=True)
class Options:
    customers: int = 10_000
    days: int = 50  # ~200,000 records with 10,000 customers
    seed: int = 1
    partitions: int = 4
    profile_events: int = 30_000  # 0: no profile run
    profile_skip: int = 2_000  # input records before the profiler is switched on
    idle_s: float = 20.0  # no progress this long after the first record: stop waiting


# ---- settings and processes -------------------------------------------------------------


def run_settings(
    bootstrap: str,
    unique: str,
    role: str,
    data_dir: Path,
    partitions: int,
    broker_kind: BrokerKind = "tansu",
) -> Settings:
    """Shared input topics (`<name>-<unique>`); own app id, internal and output topics."""
    base = Topics()
    names = {f: f"{getattr(base, f)}-{unique}" for f in Topics.model_fields}
    names |= {f: f"{getattr(base, f)}-{unique}-{role}" for f in OWN_TOPICS}
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        broker_kind=broker_kind,
        app_id=f"pw-bench-{unique}-{role}",
        data_dir=data_dir,
        store="rocksdb://",
        sweep_interval_seconds=0,
        partitions=partitions,
        topics=Topics(**names),
    )


def env_for(s: Settings) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "PROFITWATCH_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "PROFITWATCH_BROKER_KIND": s.broker_kind,
        "PROFITWATCH_APP_ID": s.app_id,
        "PROFITWATCH_DATA_DIR": str(s.data_dir),
        "PROFITWATCH_STORE": s.store,
        "PROFITWATCH_PARTITIONS": str(s.partitions),
        "PROFITWATCH_SWEEP_INTERVAL_SECONDS": str(s.sweep_interval_seconds),
    }
    for f in Topics.model_fields:
        env[f"PROFITWATCH_TOPICS__{f.upper()}"] = getattr(s.topics, f)
    return env


def exit_on_sigterm() -> None:
    """Take SIGTERM as SystemExit, so the `finally` blocks stop, by pid, the brokers and
    workers a run started (by default the signal ends Python without running them)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


class Proc:
    """A worker subprocess in its own session, always stopped by its pid."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log_path: Path, *, cwd: Path | None = None
    ) -> None:
        self.argv = argv
        self.cwd = cwd or ROOT  # another revision's tree runs its own code (`-m`)
        self.env = dict(os.environ) | env | {"PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.time()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: pgid == pid
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def died(self, what: str) -> RuntimeError:
        rc = self.proc.poll() if self.proc else None
        return RuntimeError(
            f"{what}: worker exited rc={rc}\n--- {self.log_path} ---\n{self.tail()}"
        )


def worker_argv(module: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", module, *extra, "worker", "--without-web", "-l", "info"]


def timeout_for(n: int) -> float:
    return 120.0 + n / 200.0  # generous: the floor measured here is ~1,000 events/s


# ---- the stream and what the service will emit --------------------------------------------


def make_records(opts: Options, topics: Topics) -> list[Record]:
    names = dict(zip(Topics().input_kinds(), topics.input_kinds(), strict=True))
    out: list[Record] = []
    for rec in generate_records(_config(opts)):
        topic, key, value, headers = to_kafka(rec)
        out.append((names[topic], key, value, headers))
    return out


def _config(opts: Options) -> GeneratorConfig:
    return GeneratorConfig(customers=opts.customers, days=opts.days, seed=opts.seed)


def replayed_alerts(opts: Options, settings: Settings) -> tuple[dict[str, list[str]], set[str]]:
    """Replay of the same records (every one on the broker before the worker starts):
    each customer's alert ids in order, and the customers that receive credits."""
    names = dict(zip(Topics().input_kinds(), settings.topics.input_kinds(), strict=True))
    lines = [
        json.dumps(rec | {"topic": names[rec["topic"]]}, default=str).encode()
        for rec in generate_records(_config(opts))
    ]
    r = Replayer(settings)
    alerts: dict[str, list[str]] = {}
    for _, outputs in r.replay_lines(lines):
        for o in outputs:
            if o.topic == settings.topics.alerts:
                alerts.setdefault(o.value["customer_id"], []).append(o.value["alert_id"])
    credited = {c for c, st in r.states.items() if st.lifetime[REF] != 0}
    return alerts, credited


# ---- 1. produce, 2. raw consume -----------------------------------------------------------


async def produce(
    bootstrap: str, records: list[Record]
) -> tuple[dict[TopicPartition, int], dict[str, Any]]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        sent = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    ends: dict[TopicPartition, int] = {}
    for meta in sent:
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends, {
        "records": len(records),
        "seconds": round(elapsed, 2),
        "events_per_s": rate(len(records), elapsed),
    }


def rate(n: int, seconds: float | None) -> int | None:
    return round(n / seconds) if seconds and seconds > 0 else None


def partitions_of(topics: Iterable[str], partitions: int) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in range(partitions)]


async def raw_consume(bootstrap: str, settings: Settings, expected: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    got, last = 0, 0.0
    try:
        tps = partitions_of(settings.topics.input_kinds(), settings.partitions)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_for(expected)
        # from the first fetch asked for (not the first answered) to the last record
        first = time.perf_counter()
        while got < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            n = sum(len(recs) for recs in batch.values())
            if n:
                last = time.perf_counter()
                got += n
    finally:
        await consumer.stop()
    return {
        "records": got,
        "seconds": round(last - first, 3),
        "events_per_s": rate(got, last - first),
    }


# ---- 3. the bare Faust counter -----------------------------------------------------------


def read_progress(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def run_bare(
    settings: Settings, expected: int, workdir: Path, opts: Options, *, table: bool = True
) -> dict[str, Any]:
    name = "bare" if table else "stream"
    progress = workdir / f"{name}-progress.json"
    env = env_for(settings) | {
        "BENCH_PROGRESS": str(progress),
        "BENCH_TARGET": str(expected),
        "BENCH_NO_TABLE": "0" if table else "1",
    }
    worker = Proc(worker_argv("bench.bare_counter_app"), env, workdir / f"{name}.log")
    p: dict[str, Any] = {}
    try:
        worker.start()
        deadline = time.monotonic() + timeout_for(expected)
        seen, moved = 0, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            p = read_progress(progress)
            n = int(p.get("n") or 0)
            if n >= expected:
                break
            if n != seen:
                seen, moved = n, time.monotonic()
            elif n and time.monotonic() - moved > opts.idle_s:
                break
            if not worker.alive():
                raise worker.died("bare counter")
    finally:
        worker.stop()
    n = int(p.get("n") or 0)
    if not n:
        raise RuntimeError(f"bare counter processed nothing\n{worker.tail()}")
    span = float(p["last"]) - float(p["first"])
    marks = [float(p["first"]), *map(float, p.get("quarters") or [])]
    return {
        "records": n,
        "complete": n >= expected,
        "seconds": round(span, 2),
        "events_per_s": rate(n, span),
        "events_per_s_by_quarter": [
            rate(expected // 4, b - a) for a, b in itertools.pairwise(marks)
        ],
        "start_to_first_s": round(float(p["first"]) - worker.started_at, 1),
    }


# ---- 4. the service ----------------------------------------------------------------------


async def committed(
    admin: AIOKafkaAdminClient, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    try:
        got = await admin.list_consumer_group_offsets(group, partitions=tps)
    except Exception:  # the group may not exist yet
        return {}
    return {tp: meta.offset for tp, meta in got.items()}


async def run_service(
    settings: Settings,
    ends: dict[TopicPartition, int],
    workdir: Path,
    opts: Options,
    tree: Path | None = None,
) -> dict[str, Any]:
    """The worker in a subprocess, left alone while it works: done when its group has
    committed every input partition up to its end and its outputs stopped growing
    (3 s); the outputs are read afterwards, so reading them costs the worker nothing.

    The rate is from the worker's own progress file (first to last input record
    processed, as for the bare counter). Changed states and snapshots are written once
    per commit, so the output timestamps give the time until every output is out."""
    t = settings.topics
    changelog = f"{settings.app_id}-{TABLE_NAME}-changelog"
    ensure_topics(settings)
    # the table's changelog as Faust declares it (Faust accepts it existing), so its
    # end offsets can be watched from the start
    create_topics(settings, {changelog: {"cleanup.policy": "compact"}})
    per_record = (changelog, t.dlq, t.alerts, t.internal)
    out_tps = partitions_of((*per_record, t.snapshots), settings.partitions)
    inputs = sum(ends.values())
    bs = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bs)
    await consumer.start()
    await admin.start()
    progress = workdir / f"{settings.app_id}-progress.json"
    env = env_for(settings) | {"BENCH_PROGRESS": str(progress), "BENCH_TARGET": str(inputs)}
    log = workdir / f"{settings.app_id}.log"
    # From `tree`, another revision's worker (`-m` runs the working directory's code).
    worker = Proc(worker_argv("bench.progress_worker"), env, log, cwd=tree)
    done = False
    try:
        worker.start()
        deadline = time.monotonic() + timeout_for(inputs)
        while not done and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if not worker.alive():
                raise worker.died("service")
            got = await committed(admin, settings.app_id, list(ends))
            done = all(got.get(tp, -1) >= end for tp, end in ends.items())
        # then the records the inputs caused on the internal topic, the last snapshots
        # (on tansu end offsets are exact whenever the worker finished a commit's
        # shipment: it ends each partition with a one-record batch)
        seen: dict[TopicPartition, int] = {}
        steady = time.monotonic()
        while done and time.monotonic() < deadline and time.monotonic() - steady < 3.0:
            await asyncio.sleep(0.5)
            now = await consumer.end_offsets(out_tps)
            if now != seen:
                seen, steady = now, time.monotonic()
    finally:
        worker.stop()
        await admin.close()
        await consumer.stop()
    p = read_progress(progress)
    n = int(p.get("n") or 0)
    if not n:
        raise RuntimeError(f"the service processed nothing\n{worker.tail()}")
    first, last = float(p["first"]), float(p["last"])
    marks = [first, *map(float, p.get("quarters") or [])]
    stamps = await read_timestamps(bs, out_tps)
    outs = [ts for topic in (*per_record, t.snapshots) for ts in stamps.get(topic, [])]
    out_last = max(outs) / 1000.0 if outs else last
    return {
        "records": n,
        "complete": done and n >= inputs,
        "seconds": round(last - first, 2),
        "events_per_s": rate(n, last - first),
        "events_per_s_by_quarter": [rate(inputs // 4, b - a) for a, b in itertools.pairwise(marks)],
        "until_all_out_s": round(out_last - first, 2),
        "events_per_s_all_out": rate(n, out_last - first),
        "start_to_first_s": round(first - worker.started_at, 1),
        "peak_held": p.get("peak_held"),
        "peak_rss_mib": p.get("peak_rss_mib"),
        "alert_ids": await read_alert_ids(bs, t.alerts, settings.partitions),
        # records written (end offsets): on Kafka the compacted topics read back fewer
        "outputs": {
            name: sum(end for tp, end in seen.items() if tp.topic == topic)
            for name, topic in (
                ("changelog", changelog),
                ("snapshots", t.snapshots),
                ("dlq", t.dlq),
                ("alerts", t.alerts),
                ("internal", t.internal),
            )
        },
    }


async def read_alert_ids(bootstrap: str, topic: str, partitions: int) -> dict[str, list[str]]:
    """Each customer's alert ids in the order the alerts topic has them, each once."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: dict[str, list[str]] = {}
    try:
        tps = partitions_of([topic], partitions)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                for rec in recs:
                    alert = json.loads(rec.value)
                    ids = out.setdefault(alert["customer_id"], [])
                    if alert["alert_id"] not in ids:
                        ids.append(alert["alert_id"])
                    idle_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


def compare_alerts(
    service: dict[str, list[str]], replay: dict[str, list[str]], credited: set[str]
) -> dict[str, Any]:
    compared = sorted((set(service) | set(replay)) - credited)
    equal = sum(service.get(c, []) == replay.get(c, []) for c in compared)
    return {
        "service_alerts": sum(len(v) for v in service.values()),
        "replay_alerts": sum(len(v) for v in replay.values()),
        "service_alerts_uncredited": sum(len(service.get(c, [])) for c in compared),
        "replay_alerts_uncredited": sum(len(replay.get(c, [])) for c in compared),
        "customers_compared": len(compared),
        "customers_equal": equal,
    }


async def read_timestamps(bootstrap: str, tps: list[TopicPartition]) -> dict[str, list[int]]:
    """Every record's timestamp (ms) per topic, read from the beginning until 2 s idle."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: dict[str, list[int]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2.0:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, recs in batch.items():
                if recs:
                    out.setdefault(tp.topic, []).extend(r.timestamp for r in recs)
                    idle_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


def create_topics(settings: Settings, topics: dict[str, dict[str, str]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers.split(","))
    try:
        for name, configs in topics.items():
            new = NewTopic(
                name, settings.partitions, settings.replication_factor, topic_configs=configs
            )
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([new])
    finally:
        admin.close()


# ---- 5. profile --------------------------------------------------------------------------


def run_profile(settings: Settings, workdir: Path, opts: Options) -> dict[str, Any]:
    out = workdir / "service.prof"
    argv = worker_argv(
        "bench.profiled_worker", str(out), str(opts.profile_skip), str(opts.profile_events)
    )
    worker = Proc(argv, env_for(settings), workdir / "profile.log")
    try:
        worker.start()
        deadline = time.monotonic() + 120.0 + (opts.profile_skip + opts.profile_events) / 100.0
        while not out.exists() and time.monotonic() < deadline:
            if not worker.alive():
                raise worker.died("profiled service")
            time.sleep(0.5)
    finally:
        worker.stop()
    if not out.exists():
        raise RuntimeError(f"no profile written in time\n{worker.tail()}")
    return profile_summary(out, opts.profile_events)


def _where(key: tuple[str, int, str]) -> str:
    file, line, func = key
    if file == "~":
        return func
    path = Path(file)
    parts = path.parts
    for anchor in ("site-packages", "python3.11", "python3.12", "python3.13"):
        if anchor in parts:
            path = Path(*parts[parts.index(anchor) + 1 :])
            break
    else:
        with contextlib.suppress(ValueError):
            path = path.relative_to(ROOT)
    return f"{path}:{line}({func})"


def _area(key: tuple[str, int, str]) -> str:
    file, _, func = key
    text = file if file != "~" else func
    for needle, area in (
        ("/models/", "model (models/, alerts/)"),
        ("/alerts/", "model (models/, alerts/)"),
        ("pydantic", "model (models/, alerts/)"),
        ("jiter", "model (models/, alerts/)"),
        ("/streams/", "service glue (streams/)"),
        ("/faust/", "faust + mode"),
        ("/mode/", "faust + mode"),
        ("aiokafka", "kafka clients"),
        ("/kafka/", "kafka clients"),
        ("rocksdict", "rocksdb"),
        ("epoll", "idle (epoll wait)"),
        ("/asyncio/", "asyncio"),
        ("_asyncio", "asyncio"),
        ("_contextvars", "asyncio"),
        ("selectors", "asyncio"),
        ("_socket", "socket calls"),
        ("json", "json"),
    ):
        if needle in text:
            return area
    return "other (stdlib, builtins)"


# The event loop's own frames: their cumulative time is everything, which says nothing.
LOOP_FRAMES = {
    ("asyncio/base_events.py", "_run_once"),
    ("asyncio/events.py", "_run"),
    ("~", "<method 'run' of '_contextvars.Context' objects>"),
}


def _loop_frame(key: tuple[str, int, str]) -> bool:
    return any(key[0].endswith(f) and key[2] == fn for f, fn in LOOP_FRAMES)


def profile_summary(path: Path, events: int, top: int = 15) -> dict[str, Any]:
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    areas: dict[str, float] = {}
    for key, v in stats.items():
        areas[_area(key)] = areas.get(_area(key), 0.0) + v[2]
    in_processor = sum(
        v[3]
        for (file, _, func), v in stats.items()
        if file.endswith("streams/processor.py") and func in ("apply_input", "on_internal")
    )

    def rows(index: int) -> list[str]:
        shown = [kv for kv in stats.items() if index == 2 or not _loop_frame(kv[0])]
        ranked = sorted(shown, key=lambda kv: kv[1][index], reverse=True)[:top]
        return [f"{v[3]:7.2f} cum {v[2]:7.2f} self {v[1]:>9} calls  {_where(k)}" for k, v in ranked]

    return {
        "events": events,
        "profiled_s": round(total, 2),
        "in_processor_share": round(in_processor / total, 3) if total else None,
        "self_time_by_area": {
            a: round(s / total, 3) for a, s in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "top_cumulative": rows(3),
        "top_self": rows(2),
    }


# ---- the whole run -----------------------------------------------------------------------


def _version_row(service: dict[str, Any], alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "events_per_s": service["events_per_s"],
        "complete": service["complete"],
        "peak_rss_mib": service["peak_rss_mib"],
        "start_to_first_s": service["start_to_first_s"],
        "equal": f"{alerts['customers_equal']}/{alerts['customers_compared']}",
    }


def _versions(
    base: Settings,
    ends: dict[TopicPartition, int],
    workdir: Path,
    opts: Options,
    baseline: Baseline,
    replay: dict[str, list[str]],
    credited: set[str],
) -> dict[str, list[dict[str, Any]]]:
    """The service of `baseline` and of this tree alternately on the same input topics
    (each its own group, outputs and data dir), after this tree's first run: baseline,
    now, baseline, … so a busy minute of the host falls on both alike."""
    rows: dict[str, list[dict[str, Any]]] = {"now": [], "baseline": []}
    for i in range(baseline.rounds):
        for which, tree in (("baseline", baseline.tree), ("now", None)):
            if which == "now" and i == baseline.rounds - 1:
                break  # this tree's first run came before: as many runs of each
            role = f"{which}{i}"
            s = base.model_copy(
                update={
                    "app_id": f"{base.app_id}-{role}",
                    "data_dir": workdir / role,
                    "topics": base.topics.model_copy(
                        update={f: f"{getattr(base.topics, f)}-{role}" for f in OWN_TOPICS}
                    ),
                }
            )
            svc = asyncio.run(run_service(s, ends, workdir, opts, tree))
            alerts = compare_alerts(svc.pop("alert_ids"), replay, credited)
            rows[which].append(_version_row(svc, alerts))
    return rows


@dataclass(frozen=True)
class Baseline:
    """Another revision's service, run beside this one (`--e2e-baseline REV`)."""

    rev: str
    tree: Path  # bench/__main__.py `baseline_tree`
    rounds: int = 2


def _run_stages(
    opts: Options,
    result: dict[str, Any],
    settings: Callable[[str], Settings],
    bs: str,
    workdir: Path,
    profile: bool,
    baseline: Baseline | None = None,
) -> None:
    base = settings("svc")
    records = make_records(opts, base.topics)
    result["records"] = len(records)
    ensure_topics(base)
    ends, result["produce"] = asyncio.run(produce(bs, records))
    del records
    result["raw"] = asyncio.run(raw_consume(bs, base, result["records"]))
    result["bare"] = run_bare(settings("bare"), result["records"], workdir, opts)
    result["stream"] = run_bare(settings("stream"), result["records"], workdir, opts, table=False)
    result["service"] = asyncio.run(run_service(base, ends, workdir, opts))
    replay, credited = replayed_alerts(opts, base)
    result["alerts"] = compare_alerts(result["service"].pop("alert_ids"), replay, credited)
    if baseline is not None:
        result["versions"] = _versions(base, ends, workdir, opts, baseline, replay, credited)
        result["versions"]["now"].insert(0, _version_row(result["service"], result["alerts"]))
    # the profiled window must end inside the stream
    window = min(opts.profile_events, result["records"] - opts.profile_skip - 1)
    if profile and window > 0:
        try:
            prof = replace(opts, profile_events=window)
            result["profile"] = run_profile(settings("prof"), workdir, prof)
        except RuntimeError as exc:  # the figures above stand without it
            result["profile_error"] = str(exc)


def run(
    opts: Options,
    kind: BrokerKind = "tansu",
    *,
    profile: bool = True,
    baseline: Baseline | None = None,
) -> dict[str, Any]:
    """One run on a new broker of ``kind``: the same records for the same options; with
    `baseline`, that revision's service and this one's alternately too."""
    wall = time.perf_counter()
    unique = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {
        "broker": kind,
        "baseline": baseline.rev if baseline else None,
        "customers": opts.customers,
        "days": opts.days,
        "partitions": opts.partitions,
    }
    broker = make_broker(kind)
    if kind == "kafka":
        resolve_classpath()  # once per machine (Maven): not part of the broker's start
    with tempfile.TemporaryDirectory(prefix="profitwatch-e2e-") as tmp:
        started = time.perf_counter()
        broker.start(timeout=120.0)
        result["broker_start_s"] = round(time.perf_counter() - started, 1)
        result["broker_version"] = getattr(broker, "version", None)
        workdir = Path(tmp)
        bs = broker.bootstrap

        def settings(role: str) -> Settings:
            return run_settings(bs, unique, role, workdir / role, opts.partitions, kind)

        try:
            _run_stages(opts, result, settings, bs, workdir, profile, baseline)
        finally:
            broker.stop()
    svc, bare, raw = (result[k]["events_per_s"] or 0 for k in ("service", "bare", "raw"))
    result["service_vs_bare"] = round(svc / bare, 2) if bare else None
    stream = result["stream"]["events_per_s"] or 0
    result["service_vs_stream"] = round(svc / stream, 2) if stream else None
    result["service_vs_raw"] = round(svc / raw, 4) if raw else None
    result["bare_vs_raw"] = round(bare / raw, 4) if raw else None
    result["total_s"] = round(time.perf_counter() - wall, 1)
    return result


def report(r: dict[str, Any]) -> list[str]:
    lines = [
        f"end to end on {_broker_name(r)}: {r['records']} records, {r['customers']} customers, "
        f"{r['days']} days, {r['partitions']} partitions, one worker (whole run {r['total_s']} s)",
        f"  {'stage':<34} {'events/s':>9} {'records':>8} {'seconds':>8}",
    ]
    names = {
        "produce": "produce (aiokafka, acks=1)",
        "raw": "raw consume (aiokafka, no group)",
        "stream": "Faust stream alone (no table)",
        "bare": "bare Faust counter (rocksdb)",
        "service": "full service (profitwatch worker)",
    }
    for key, label in names.items():
        s = r[key]
        lines.append(
            f"  {label:<34} {s['events_per_s'] or '-':>9} {s['records']:>8} {s['seconds']:>8}"
        )
    svc, bare = r["service"], r["bare"]
    lines += [
        f"  service / bare counter             {r['service_vs_bare']}",
        f"  service / Faust stream alone       {r['service_vs_stream']}",
        f"  service / raw consume              {r['service_vs_raw']}",
        f"  bare counter / raw consume         {r['bare_vs_raw']}",
        f"  service by quarter of the stream   {svc['events_per_s_by_quarter']} events/s",
        f"  bare counter by quarter            {bare['events_per_s_by_quarter']} events/s",
        f"  service until every output is out  {svc['events_per_s_all_out']} events/s "
        f"({svc['until_all_out_s']} s: states and snapshots go out at commits)",
        "  service outputs                    "
        + ", ".join(f"{k} {n}" for k, n in svc["outputs"].items()),
        f"  start to first record              bare {bare['start_to_first_s']} s, "
        f"service {svc['start_to_first_s']} s",
        f"  service: peak records held         {svc['peak_held']} (order of application)",
        f"  service: peak RSS                  {svc['peak_rss_mib']} MiB",
    ]
    a = r["alerts"]
    lines += [
        f"  alerts, service / replay           {a['service_alerts']} / {a['replay_alerts']} "
        f"(distinct alert ids; referrers' credits arrive when they arrive)",
        f"  ... customers without credits      {a['service_alerts_uncredited']} / "
        f"{a['replay_alerts_uncredited']}; alert sequences equal for "
        f"{a['customers_equal']} of {a['customers_compared']} customers",
    ]
    if not all(r[k]["complete"] for k in ("service", "bare", "stream")):
        lines.append("  WARNING: a run stopped before all records were processed (see above)")
    ok = (svc["events_per_s"] or 0) >= TARGET_EVENTS_PER_S
    lines.append(
        f"  target >= {TARGET_EVENTS_PER_S} events/s end to end: {'met' if ok else 'NOT met'}"
    )
    ok = (svc["events_per_s"] or 0) >= (bare["events_per_s"] or 0)
    lines.append(f"  target service >= bare counter: {'met' if ok else 'NOT met'}")
    versions = r.get("versions")
    if versions:
        lines += _versions_report(r["baseline"], versions)
    if "profile_error" in r:
        lines.append(f"\nprofile run failed: {r['profile_error']}")
    prof = r.get("profile")
    if prof:
        lines.append(
            f"\nprofile of the service: input records {prof['events']} (cProfile on, "
            f"{prof['profiled_s']} s profiled); inside Processor.apply_input/on_internal: "
            f"{prof['in_processor_share']:.0%}"
        )
        lines.append(
            "  self time by area: "
            + ", ".join(f"{a} {s:.0%}" for a, s in prof["self_time_by_area"].items())
        )
        lines.append("  top by cumulative time:")
        lines += ["    " + row for row in prof["top_cumulative"]]
        lines.append("  top by self time:")
        lines += ["    " + row for row in prof["top_self"]]
    return lines


def _versions_report(rev: str, versions: dict[str, list[dict[str, Any]]]) -> list[str]:
    now, then = versions["now"], versions["baseline"]
    lines = [
        f"  service, this revision and {rev}, alternating on the same records:",
        f"    {'run':<10} {'events/s':>9} {'peak RSS':>9} {'start s':>8} {'equal':>10}",
    ]
    for name, rows in (("now", now), (rev, then)):
        for row in rows:
            flag = "" if row["complete"] else "  (incomplete)"
            lines.append(
                f"    {name:<10} {row['events_per_s'] or '-':>9} {row['peak_rss_mib']:>9} "
                f"{row['start_to_first_s']:>8} {row['equal']:>10}{flag}"
            )
    rates = [[row["events_per_s"] or 0 for row in rows] for rows in (now, then)]
    if all(rates):
        a, b = (statistics.median(x) for x in rates)
        lines.append(f"    median this / {rev}: {a / b:.2f}")
    return lines


def _broker_name(r: dict[str, Any]) -> str:
    if r["broker"] == "kafka":
        return f"Apache Kafka {r.get('broker_version') or ''}".strip()
    return "tansu"


def side_by_side(runs: list[dict[str, Any]]) -> list[str]:
    """The runs of each broker over the same records, one column each."""
    names = [_broker_name(r) for r in runs]
    width = max(14, *(len(n) for n in names))
    head = runs[0]
    lines = [
        f"end to end, side by side: {head['records']} records, {head['customers']} customers, "
        f"{head['partitions']} partitions, one worker",
        f"  {'events/s':<34} " + " ".join(f"{n:>{width}}" for n in names),
    ]

    def row(label: str, cells: list[Any]) -> None:
        lines.append(
            f"  {label:<34} " + " ".join(f"{c if c is not None else '-':>{width}}" for c in cells)
        )

    for key, label in (
        ("produce", "produce (aiokafka, acks=1)"),
        ("raw", "raw consume (aiokafka, no group)"),
        ("stream", "Faust stream alone (no table)"),
        ("bare", "bare Faust counter (rocksdb)"),
        ("service", "full service (profitwatch worker)"),
    ):
        row(label, [r[key]["events_per_s"] for r in runs])
    row("service until every output is out", [r["service"]["events_per_s_all_out"] for r in runs])
    row("service / bare counter", [r["service_vs_bare"] for r in runs])
    row("service / Faust stream alone", [r["service_vs_stream"] for r in runs])
    lines.append(f"  {'start-up (seconds)':<34}")
    row("broker start to ready", [r["broker_start_s"] for r in runs])
    row("bare counter start to first record", [r["bare"]["start_to_first_s"] for r in runs])
    row("service start to first record", [r["service"]["start_to_first_s"] for r in runs])
    row("service peak RSS (MiB)", [r["service"]["peak_rss_mib"] for r in runs])
    row(
        "alerts service / replay",
        [f"{r['alerts']['service_alerts']}/{r['alerts']['replay_alerts']}" for r in runs],
    )
    return lines
