"""Engine benchmark (issue: profit engine): a generated stream through `replay`'s
pipeline in-process — JSON parsing, validation, the ledger, alerts — on one core.

Run as `python -m bench.engine FILE` in its own process so peak RSS is the engine's.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from models import codec
from models.replay import Replayer
from models.settings import Settings
from streams.process import tune_gc


def run(path: Path) -> dict[str, object]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, by contract
    tune_gc()  # as the CLI does
    settings = Settings()
    r = Replayer(settings)
    alerts_topic = settings.topics.alerts
    alerts = 0
    gc.collect()
    started = time.perf_counter()
    with path.open("rb") as f:
        # The whole replay pipeline: count the queues, read, decode, the order of
        # application, the model.
        for _, outputs in r.replay_lines(f):
            for out in outputs:
                alerts += out.topic == alerts_topic
    elapsed = time.perf_counter() - started
    records = sum(r.outcomes.values())
    encode_started = time.perf_counter()
    sizes = sorted(len(codec.dumps(s)) for s in r.states.values())
    encode_s = time.perf_counter() - encode_started
    return {
        "records": records,
        "outcomes": dict(r.outcomes),
        "alerts": alerts,
        "seconds": round(elapsed, 3),
        "events_per_s": round(records / elapsed),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "customers": len(sizes),
        "state_bytes_median": int(statistics.median(sizes)),
        "state_bytes_p90": sizes[int(len(sizes) * 0.9)],
        "state_bytes_max": sizes[-1],
        "state_encode_us": round(encode_s / len(sizes) * 1e6, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]))))
