"""A worker's own count of the records it processed, for bench/e2e.py to read.

`BENCH_PROGRESS` names the JSON file, `BENCH_TARGET` the records expected:
`{"n": records, "first": time.time() of the first, "last": … of the last,
"quarters": [… at each quarter of BENCH_TARGET]}`, rewritten every 1,000 records, at
the target and whenever `write()` is called. The bare counter and the service both
report through this, so their rates are measured alike.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class Progress:
    def __init__(self, default_path: str) -> None:
        self.path = Path(os.environ.get("BENCH_PROGRESS", default_path))
        self.target = int(os.environ.get("BENCH_TARGET", "0"))
        self.quarter = max(self.target // 4, 1)
        self.data: dict[str, Any] = {"n": 0, "first": None, "last": None, "quarters": []}

    def tick(self) -> None:
        """One more record processed."""
        data = self.data
        n = data["n"] = data["n"] + 1
        now = data["last"] = time.time()
        if n == 1:
            data["first"] = now
        if n % self.quarter == 0:
            data["quarters"].append(now)
        if n % 1000 == 0 or n == self.target:
            self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)
