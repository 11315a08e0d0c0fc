"""The framework's own floor for the end-to-end benchmark (bench/e2e.py): a bare Faust
agent over the service's five input topics that only increments a per-customer
counter in a table. Same app settings as the service (`streams.app.create_app`: the
tansu quirks, rocksdb store), none of the model.

    python -m bench.bare_counter_app worker --without-web -l info

Settings come from the environment (`PROFITWATCH_…`). `BENCH_PROGRESS` names a JSON
file the app rewrites twice a second (and once more at `BENCH_TARGET` events):
`{"n": events, "first": time.time() of the first, "last": … of the last, "quarters":
[… at each quarter of BENCH_TARGET]}`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

from models.settings import Settings
from streams.app import create_app

settings = Settings()
app = create_app(settings)
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
    "partitions": settings.partitions,
}
inputs = app.topic(*settings.topics.input_kinds(), **RAW)
counts = app.Table("counts", key_type=bytes, value_type=bytes, partitions=settings.partitions)

PROGRESS = Path(os.environ.get("BENCH_PROGRESS", "bare-progress.json"))
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
progress: dict[str, Any] = {"n": 0, "first": None, "last": None, "quarters": []}
QUARTER = max(TARGET // 4, 1)


def write_progress() -> None:
    tmp = PROGRESS.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress))
    os.replace(tmp, PROGRESS)


async def count(stream: faust.StreamT[bytes]) -> None:
    n = 0
    async for event in stream.events():
        key = event.key or b"-"
        counts[key] = str(int(counts.get(key) or b"0") + 1).encode()
        n += 1
        now = time.time()
        if n == 1:
            progress["first"] = now
        progress["n"] = n
        progress["last"] = now
        if n % QUARTER == 0:
            progress["quarters"].append(now)
        if n == TARGET:
            write_progress()


async def report() -> None:
    if progress["n"]:
        write_progress()


app.agent(inputs, name="count")(count)
app.timer(0.5, name="report")(report)

if __name__ == "__main__":
    sys.argv = ["bare_counter_app", *sys.argv[1:]]
    app.main()
