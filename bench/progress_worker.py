"""`profitwatch worker` that reports its progress the way the bare counter does
(bench/bare_counter_app.py), so both rates are measured alike: from the first to the
last input record processed, as the worker itself sees them.

    python -m bench.progress_worker worker [worker options…]

The progress file is bench/progress.py's (`BENCH_PROGRESS`, `BENCH_TARGET`), with the
peak of records held for their turn (section 9) and the worker's peak RSS. Wraps
`Processor.apply_input` and `OrderedInput.on_event` from here: streams/ is untouched.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

from bench.progress import Progress
from streams import cli
from streams.ordering import OrderedInput
from streams.processor import Processor


def install() -> None:
    apply_input, on_event = Processor.apply_input, OrderedInput.on_event
    progress = Progress("service-progress.json")
    tick, data = progress.tick, progress.data
    data["peak_held"] = 0

    def counted(self: Processor, *args: Any) -> None:
        apply_input(self, *args)
        data["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        tick()

    def watched(self: OrderedInput, event: Any) -> None:
        on_event(self, event)
        if self.order.held > data["peak_held"]:
            data["peak_held"] = self.order.held

    setattr(Processor, "apply_input", counted)  # noqa: B010 (mypy: no method assignment)
    setattr(OrderedInput, "on_event", watched)  # noqa: B010


if __name__ == "__main__":
    install()
    sys.exit(cli.main(sys.argv[1:]))  # worker [options…]
