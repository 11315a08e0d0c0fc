"""The framework's own floor for the end-to-end benchmark (bench/e2e.py): a bare Faust
agent over the service's five input topics that only increments a per-customer
counter in a table. Same app settings as the service (`streams.app.create_app`: the
tansu quirks, rocksdb store), none of the model.

    python -m bench.bare_counter_app worker --without-web -l info

Settings come from the environment (`PROFITWATCH_…`). Progress goes to
bench/progress.py's file (`BENCH_PROGRESS`, `BENCH_TARGET`), also twice a second.
With `BENCH_NO_TABLE=1` the agent only counts records in memory: Faust's stream loop
alone, what any Faust agent here costs before it does anything.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import faust

from bench.progress import Progress
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

progress = Progress("bare-progress.json")


async def count(stream: faust.StreamT[bytes]) -> None:
    tick = progress.tick
    if os.environ.get("BENCH_NO_TABLE") == "1":
        async for _event in stream.events():
            tick()
        return
    async for event in stream.events():
        key = event.key or b"-"
        counts[key] = str(int(counts.get(key) or b"0") + 1).encode()
        tick()


async def report() -> None:
    if progress.data["n"]:
        progress.write()


app.agent(inputs, name="count")(count)
app.timer(0.5, name="report")(report)

if __name__ == "__main__":
    sys.argv = ["bare_counter_app", *sys.argv[1:]]
    app.main()
