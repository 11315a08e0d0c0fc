"""`make bench`: every benchmark in one run, figures printed as a table.

python -m bench [--customers N] [--days D] [--repeat R] [--only engine|e2e]
                [--e2e-customers N] [--e2e-days D] [--e2e-profile-events N]

`engine` is the profit engine in-process (`--repeat` runs, best reported); `e2e` is
the streaming service end to end on the embedded broker (bench/e2e.py, one run).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import e2e
from bench.e2e import Options as E2E
from models.generator import GeneratorConfig, generate_lines


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


def engine(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    path = workdir / "stream.jsonl"
    started = time.perf_counter()
    cfg = GeneratorConfig(customers=args.customers, days=args.days, seed=args.seed)
    with path.open("w", encoding="utf-8") as f:
        for line in generate_lines(cfg):
            f.write(line + "\n")
    gen_s = time.perf_counter() - started
    runs: list[dict[str, object]] = []
    for _ in range(args.repeat):  # a fresh process each: peak RSS is the engine's own
        out = subprocess.run(
            [sys.executable, "-m", "bench.engine", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout))
    # The host's cores are shared, so runs spread: report the best and all of them.
    result = max(runs, key=lambda r: int(r["events_per_s"]))  # type: ignore[call-overload]
    result["events_per_s_runs"] = sorted(int(r["events_per_s"]) for r in runs)  # type: ignore[call-overload]
    result["generate_s"] = round(gen_s, 2)
    return result


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", choices=["engine", "e2e"], default=None)
    p.add_argument("--e2e-customers", type=int, default=E2E.customers)
    p.add_argument("--e2e-days", type=int, default=E2E.days, help="50 days: ~200,000 records")
    p.add_argument(
        "--e2e-profile-events",
        type=int,
        default=E2E.profile_events,
        help="input records profiled in a second service run (0: no profile)",
    )
    args = p.parse_args()
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
        print()
        print("\n".join(e2e.report(e2e.run(opts))))
    return 0


def print_engine(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="profitwatch-bench-") as tmp:
        r = engine(args, Path(tmp))
    print("\nengine (replay pipeline, in-process, one core)")
    for k, v in r.items():
        print(f"  {k:<20} {v}")
    target = 25_000
    ok = int(r["events_per_s"]) >= target  # type: ignore[call-overload]
    print(f"  target               >= {target} events/s: {'met' if ok else 'NOT met'}")
    size_ok = int(r["state_bytes_median"]) < 4096  # type: ignore[call-overload]
    print(f"  target               median state < 4 KB: {'met' if size_ok else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
