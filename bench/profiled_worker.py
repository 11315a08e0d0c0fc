"""`profitwatch worker` with cProfile on for a window of input records (bench/e2e.py).

    python -m bench.profiled_worker OUT.prof SKIP COUNT worker [worker options…]

Wraps `Processor.apply_input` (from here: streams/ is untouched) to switch the profiler
on at input record SKIP + 1 and off after COUNT more, then writes OUT.prof. Only the
steady state is profiled: no imports, no group join, no shutdown. Everything in the
main thread is seen: Faust's stream loop, aiokafka, the model and rocksdb calls.
"""

from __future__ import annotations

import cProfile
import os
import sys
from pathlib import Path
from typing import Any

from streams import cli
from streams.processor import Processor


def install(out: Path, skip: int, count: int) -> None:
    prof = cProfile.Profile()
    original = Processor.apply_input
    seen = 0

    def apply_input(self: Processor, *args: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == skip + 1:
            prof.enable()
        elif seen == skip + count + 1:
            prof.disable()
            tmp = out.with_suffix(".tmp")
            prof.dump_stats(tmp)
            os.replace(tmp, out)
        original(self, *args)

    setattr(Processor, "apply_input", apply_input)  # noqa: B010 (mypy: no method assignment)


if __name__ == "__main__":
    out, skip, count, *rest = sys.argv[1:]
    install(Path(out), int(skip), int(count))
    sys.exit(cli.main(rest))  # rest: worker [options…]
