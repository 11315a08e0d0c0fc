"""Process-wide tuning shared by every long-running command (replay, worker, bench)."""

from __future__ import annotations

import gc

# The ledgers hold many long-lived containers (day buckets, id maps). With CPython's
# default generation-0 threshold (700 allocations) the collector keeps rescanning
# them: about a fifth of the engine's time on a year of history. Fewer, larger young
# collections keep cycle collection without that cost; the engine creates no cycles
# on its hot path.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
