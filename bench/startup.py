"""Start-up benchmark: seconds from `profitwatch worker` being spawned to Faust's
"Worker: Ready" line, on each broker, in one run.

Each start is a new service (its own topics, group and data dir, so recovery has
nothing to restore) and then a restart of the same one (the group exists, the table is
on disk). On Apache Kafka it also runs with Faust's own 1.5 s fetch wait
(`PROFITWATCH_FETCH_MAX_WAIT_MS=1500`) next to the default, alternating, so the effect
of that setting is measured, not assumed. Every worker and broker is stopped by pid.

    python -m bench.startup [--repeat N] [--brokers tansu,kafka]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.e2e import Proc, env_for, exit_on_sigterm, run_settings, worker_argv
from streams.apache_kafka import kafka_available
from streams.broker import BrokerKind, make_broker
from streams.topics import ensure_topics

READY = "[^Worker]: Ready"


def time_to_ready(env: dict[str, str], log: Path, timeout_s: float = 120.0) -> float:
    offset = log.stat().st_size if log.exists() else 0
    worker = Proc(worker_argv("streams.cli"), env, log)
    try:
        started = time.monotonic()
        worker.start()
        while time.monotonic() - started < timeout_s:
            if READY in log.read_bytes()[offset:].decode("utf-8", "replace"):
                return time.monotonic() - started
            if not worker.alive():
                raise worker.died("start-up")
            time.sleep(0.05)
        raise RuntimeError(f"not ready in {timeout_s} s\n{worker.tail()}")
    finally:
        worker.stop()


def run(kind: BrokerKind, repeat: int, variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    out: dict[str, dict[str, list[float]]] = {v: {"new": [], "restart": []} for v in variants}
    with (
        tempfile.TemporaryDirectory(prefix="profitwatch-startup-") as tmp,
        make_broker(kind) as broker,
    ):
        for i in range(repeat):
            for name, extra in variants.items():  # alternating: the host's noise is shared
                unique = uuid.uuid4().hex[:8]
                settings = run_settings(
                    broker.bootstrap, unique, "start", Path(tmp) / unique, 4, kind
                )
                ensure_topics(settings)
                env = env_for(settings) | extra
                log = Path(tmp) / f"{unique}.log"
                out[name]["new"].append(time_to_ready(env, log))
                out[name]["restart"].append(time_to_ready(env, log))
            print(f"  {kind}: round {i + 1} of {repeat}", file=sys.stderr, flush=True)
    return {"broker": kind, "version": getattr(broker, "version", None), "runs": out}


def report(results: list[dict[str, Any]]) -> list[str]:
    lines = ["start-up: spawn to Faust's Ready line, seconds (median; all runs)"]
    for r in results:
        name = "tansu" if r["broker"] == "tansu" else f"Apache Kafka {r['version']}"
        for variant, starts in r["runs"].items():
            for what, xs in starts.items():
                cells = " ".join(f"{x:.2f}" for x in xs)
                label = f"{name}, {variant}, {what} service"
                lines.append(f"  {label:<64} {statistics.median(xs):5.2f}  ({cells})")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--brokers", default="tansu,kafka")
    args = p.parse_args()
    exit_on_sigterm()
    results = []
    known: tuple[BrokerKind, ...] = ("tansu", "kafka")
    for kind in (k for k in known if k in args.brokers.split(",")):
        if kind == "kafka" and not kafka_available():
            print("(no Java >= 17 and Maven here: start-up on tansu only)")
            continue
        variants: dict[str, dict[str, str]] = {"defaults": {}}
        if kind == "kafka":
            variants["Faust's 1.5 s fetch wait"] = {"PROFITWATCH_FETCH_MAX_WAIT_MS": "1500"}
        results.append(run(kind, args.repeat, variants))
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
