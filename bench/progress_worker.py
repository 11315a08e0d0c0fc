"""`profitwatch worker` that reports its progress the way the bare counter does
(bench/bare_counter_app.py), so both rates are measured alike: from the first to the
last input record processed, as the worker itself sees them.

    python -m bench.progress_worker worker [worker options…]

`BENCH_PROGRESS` names the JSON file, `BENCH_TARGET` the input records expected:
`{"n": records, "first": time.time() of the first, "last": … of the last,
"quarters": [… at each quarter of BENCH_TARGET]}`, rewritten every 1,000 records
and at the target. Wraps `Processor.on_input` from here: streams/ is untouched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from streams import cli
from streams.processor import Processor

PROGRESS = Path(os.environ.get("BENCH_PROGRESS", "service-progress.json"))
TARGET = int(os.environ.get("BENCH_TARGET", "0"))


def install() -> None:
    original = Processor.on_input
    progress: dict[str, Any] = {"n": 0, "first": None, "last": None, "quarters": []}
    quarter = max(TARGET // 4, 1)

    def write() -> None:
        tmp = PROGRESS.with_suffix(".tmp")
        tmp.write_text(json.dumps(progress))
        os.replace(tmp, PROGRESS)

    def on_input(self: Processor, *args: Any) -> None:
        original(self, *args)
        n = progress["n"] = progress["n"] + 1
        now = progress["last"] = time.time()
        if n == 1:
            progress["first"] = now
        if n % quarter == 0:
            progress["quarters"].append(now)
        if n % 1000 == 0 or n == TARGET:
            write()

    setattr(Processor, "on_input", on_input)  # noqa: B010 (mypy: no method assignment)


if __name__ == "__main__":
    install()
    sys.exit(cli.main(sys.argv[1:]))  # worker [options…]
