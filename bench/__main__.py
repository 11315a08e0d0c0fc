"""`make bench`: every benchmark in one run, figures printed as a table.

python -m bench [--customers N] [--days D] [--repeat R] [--only engine|e2e|startup|live]
                [--mid-customers N] [--baseline REV]
                [--e2e-customers N] [--e2e-days D] [--e2e-profile-events N]
                [--e2e-brokers tansu,kafka] [--e2e-baseline REV [--e2e-rounds N]]

`engine` is the profit engine in-process on two streams (`--repeat` runs each, best
reported; with `--baseline REV` that revision's engine runs on the same streams,
alternating with this one); `e2e` is the streaming service end to end, one run on each
broker (tansu, then Apache Kafka when Java is here) over the same records, then both
side by side (bench/e2e.py; with `--e2e-baseline REV` that revision's service and this
one's alternately, `--e2e-rounds` runs each, on the same records); `startup` is spawn
to Faust's Ready line on each broker (bench/startup.py); `live` is event -> alert
latency of a paced stream into a caught-up worker (bench/live.py; with `--baseline`
that revision's worker too).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import e2e
from bench.e2e import Options as E2E
from models.generator import GeneratorConfig, generate_lines
from streams.apache_kafka import kafka_available
from streams.broker import BrokerKind


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, Python {platform.python_version()}, {platform.system()} {platform.machine()}"


@dataclass(frozen=True)
class Stream:
    """One engine benchmark stream."""

    name: str
    cfg: GeneratorConfig


def streams(args: argparse.Namespace) -> list[Stream]:
    return [
        Stream(
            f"{args.customers} customers x {args.days} days, ~240 records per customer-year",
            GeneratorConfig(customers=args.customers, days=args.days, seed=args.seed),
        ),
        # A mid-market book: many customers, few records each; upstream jitter as in
        # the first (the generator's default), so the merge reorders both.
        Stream(
            f"{args.mid_customers} customers x {args.days} days, ~55 records per customer-year",
            GeneratorConfig(
                customers=args.mid_customers, days=args.days, seed=args.seed, activity=0.23
            ),
        ),
    ]


def baseline_tree(rev: str, workdir: Path) -> Path:
    """The project at `rev`, unpacked (its own bench.engine runs from there)."""
    root = Path(__file__).resolve().parents[1]
    tree = workdir / f"baseline-{rev}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def engine_run(path: Path, tree: Path | None) -> dict[str, object]:
    """One run in a fresh process (peak RSS is the engine's own), of this tree's
    engine or, from `tree`, another revision's."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.engine", str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,  # `-m` puts the working directory first on sys.path
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def engine(args: argparse.Namespace, stream: Stream, workdir: Path) -> dict[str, object]:
    path = workdir / "stream.jsonl"
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as f:
        for line in generate_lines(stream.cfg):
            f.write(line + "\n")
    gen_s = time.perf_counter() - started
    tree = baseline_tree(args.baseline, workdir) if args.baseline else None
    runs: list[dict[str, object]] = []
    before: list[dict[str, object]] = []
    # Alternated, so a busy minute of this shared host falls on both versions alike.
    for _ in range(args.repeat):
        runs.append(engine_run(path, None))
        if tree is not None:
            before.append(engine_run(path, tree))
    result = max(runs, key=_rate)
    result["events_per_s_runs"] = sorted(map(_rate, runs))
    if before:
        result[f"baseline {args.baseline} runs"] = sorted(map(_rate, before))
        result["baseline peak_rss_mib"] = max(float(str(b["peak_rss_mib"])) for b in before)
        now, then = statistics.median(map(_rate, runs)), statistics.median(map(_rate, before))
        result["median now / baseline"] = round(now / then, 3)
    result["generate_s"] = round(gen_s, 2)
    path.unlink()
    if tree is not None:
        shutil.rmtree(tree)
    return result


def _rate(run: dict[str, object]) -> int:
    rate = run["events_per_s"]
    assert isinstance(rate, int)
    return rate


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--mid-customers", type=int, default=2000, help="the mid-market stream")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run this git revision's engine on the same streams, alternating",
    )
    p.add_argument("--only", choices=["engine", "e2e", "startup", "live"], default=None)
    p.add_argument("--e2e-customers", type=int, default=E2E.customers)
    p.add_argument(
        "--e2e-brokers",
        default="tansu,kafka",
        help="comma-separated: tansu, kafka (Apache Kafka from Maven Central)",
    )
    p.add_argument("--e2e-days", type=int, default=E2E.days, help="50 days: ~200,000 records")
    p.add_argument(
        "--e2e-baseline",
        metavar="REV",
        help="also run this git revision's service on the same records, alternating",
    )
    p.add_argument(
        "--e2e-rounds", type=int, default=2, help="with --e2e-baseline: runs of each version"
    )
    p.add_argument(
        "--e2e-profile-events",
        type=int,
        default=E2E.profile_events,
        help="input records profiled in a second service run (0: no profile)",
    )
    args = p.parse_args()
    e2e.exit_on_sigterm()
    print(f"machine: {machine()}")
    if args.only in (None, "engine"):
        print_engine(args)
    if args.only in (None, "e2e"):
        opts = E2E(
            customers=args.e2e_customers,
            days=args.e2e_days,
            seed=args.seed,
            profile_events=args.e2e_profile_events,
        )
        known: tuple[BrokerKind, ...] = ("tansu", "kafka")
        kinds = [k for k in known if k in args.e2e_brokers.split(",")]
        if "kafka" in kinds and not kafka_available():
            print("\n(no Java >= 17 and Maven here: the end-to-end run is on tansu only)")
            kinds.remove("kafka")
        base: e2e.Baseline | None = None
        tmp = None
        if args.e2e_baseline:
            tmp = tempfile.TemporaryDirectory(prefix="profitwatch-e2e-baseline-")
            tree = baseline_tree(args.e2e_baseline, Path(tmp.name))
            base = e2e.Baseline(args.e2e_baseline, tree, rounds=args.e2e_rounds)
        runs = []
        for kind in kinds:  # the same records on each; the profile on the last broker only
            runs.append(e2e.run(opts, kind, profile=kind == kinds[-1], baseline=base))
            print()
            print("\n".join(e2e.report(runs[-1])))
        if len(runs) > 1:
            print()
            print("\n".join(e2e.side_by_side(runs)))
        if tmp is not None:
            tmp.cleanup()
    if args.only in (None, "startup"):
        print()
        subprocess.run(
            [sys.executable, "-m", "bench.startup", "--brokers", args.e2e_brokers], check=True
        )
    if args.only in (None, "live"):
        live_argv = ["--baseline", args.baseline] if args.baseline else []
        live_argv += ["--brokers", args.e2e_brokers]
        subprocess.run([sys.executable, "-m", "bench.live", *live_argv], check=True)
    return 0


def print_engine(args: argparse.Namespace) -> None:
    target = 25_000
    for stream in streams(args):
        with tempfile.TemporaryDirectory(prefix="profitwatch-bench-") as tmp:
            r = engine(args, stream, Path(tmp))
        print(f"\nengine (replay pipeline, in-process, one core): {stream.name}")
        for k, v in r.items():
            print(f"  {k:<24} {v}")
        ok = _rate(r) >= target
        print(f"  target                   >= {target} events/s: {'met' if ok else 'NOT met'}")
        size_ok = int(r["state_bytes_median"]) < 4096  # type: ignore[call-overload]
        print(f"  target                   median state < 4 KB: {'met' if size_ok else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
