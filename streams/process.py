"""Process-wide settings shared by every long-running command (replay, worker,
notifiers, bench)."""

from __future__ import annotations

import gc
import signal
from typing import Protocol, TypeVar

T_co = TypeVar("T_co", covariant=True)

# The ledgers hold many long-lived containers (day buckets, id maps). With CPython's
# default generation-0 threshold (700 allocations) the collector keeps rescanning
# them: about a fifth of the engine's time on a year of history. Fewer, larger young
# collections keep cycle collection without that cost; the engine creates no cycles
# on its hot path.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


class Stoppable(Protocol[T_co]):
    """A loop that runs until asked to stop from a signal handler."""

    def run(self) -> T_co: ...

    def stop(self) -> None: ...


def run_until_signalled(loop: Stoppable[T_co]) -> T_co:
    """`loop.run()` with SIGTERM and SIGINT asking it to stop (main thread only): it
    finishes what it holds and commits, rather than dying mid-delivery."""
    previous = {
        sig: signal.signal(sig, lambda signum, frame: loop.stop())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return loop.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
