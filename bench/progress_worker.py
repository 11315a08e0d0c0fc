"""`profitwatch worker` that reports its progress the way the bare counter does
(bench/bare_counter_app.py), so both rates are measured alike: from the first to the
last input record processed, as the worker itself sees them.

    python -m bench.progress_worker worker [worker options…]

The progress file is bench/progress.py's (`BENCH_PROGRESS`, `BENCH_TARGET`). Wraps
`Processor.on_input` from here: streams/ is untouched.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.progress import Progress
from streams import cli
from streams.processor import Processor


def install() -> None:
    original = Processor.on_input
    tick = Progress("service-progress.json").tick

    def on_input(self: Processor, *args: Any) -> None:
        original(self, *args)
        tick()

    setattr(Processor, "on_input", on_input)  # noqa: B010 (mypy: no method assignment)


if __name__ == "__main__":
    install()
    sys.exit(cli.main(sys.argv[1:]))  # worker [options…]
