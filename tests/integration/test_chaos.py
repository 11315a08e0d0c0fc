"""Chaos: a backlog processed while the worker is killed with SIGKILL at seeded random
moments — during start-up, during recovery from the changelog (its data dir wiped
first), and while processing, between and across commits (one a second) — and
restarted each time. Then every customer's final figures, the DLQ multiset and the
alerts of every customer without referral credits equal `replay`; the changelog alone
restores the same table in a fresh worker; and each lifetime's outcome counters add up
to what it consumed.

`make test` runs a small one (>= 3 kills); `make chaos` the full one (>= 20,000
records, >= 10 kills): PROFITWATCH_CHAOS_CUSTOMERS, _DAYS, _KILLS and _SEED size it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.broker import free_port
from streams.produce import send_all, to_kafka
from tests.integration.expectations import (
    Expected,
    check_api_figures,
    check_equal,
    generated,
    settled,
    split_referrals,
)
from tests.integration.worker import READY, WorkerProcess
from tests.kafka_helpers import committed_offsets, committed_total, end_offsets, wait_until_consumed

CUSTOMERS = int(os.environ.get("PROFITWATCH_CHAOS_CUSTOMERS", "40"))
# Over 2 x window_days (180) of history, with few customers: a commit interval at full
# speed then covers months of a customer's event time, so records come again after a
# crash when their ids have expired; positions (contract section 7) must catch them.
DAYS = int(os.environ.get("PROFITWATCH_CHAOS_DAYS", "420"))
KILLS = int(os.environ.get("PROFITWATCH_CHAOS_KILLS", "4"))
SEED = int(os.environ.get("PROFITWATCH_CHAOS_SEED", "7"))
RESTORING = "Restoring state from changelog topics"


@dataclass
class Lifetime:
    phase: str  # what the kill was aimed at
    landed: str = ""  # where the log says it landed
    outstanding: int = 0  # input records not yet committed at the kill
    committed_at_start: int = 0  # input records committed when it was spawned
    outcomes: float = 0.0  # the last scrape of its input outcome counters
    committed_before_scrape: int = 0  # input records committed just before that scrape


def _input_outcomes(port: int, inputs: set[str]) -> float | None:
    """Sum of profitwatch_input_records_total over the input topics, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = 0.0
    for m in re.finditer(r"^profitwatch_input_records_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("topic") in inputs:
            total += float(m.group(2))
    return total


def _landed(log: str) -> str:
    if READY in log:
        return "processing"
    if RESTORING in log and "Restore complete" not in log:
        return "recovery"
    return "start-up"


@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_changes_nothing(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    rng = random.Random(SEED)
    inputs = set(settings.topics.input_kinds())
    n = settings.partitions
    records = generated(CUSTOMERS, DAYS, SEED, settings)
    ref, rest = split_referrals(records, settings)
    exp = Expected(settings).phase(ref).phase(rest)
    log = tmp_path / "worker.log"
    workers.append(settled(kafka_bootstrap, env, settings, log, ref))
    send_all(kafka_bootstrap, (to_kafka(r) for r in rest))  # the backlog, no worker
    total = sum(end_offsets(kafka_bootstrap, sorted(inputs), n).values())

    def committed_inputs() -> int:
        return committed_total(kafka_bootstrap, settings.app_id, inputs)

    port = free_port()
    data = tmp_path / "data"
    env = env | {
        "PROFITWATCH_WEB_PORT": str(port),
        "PROFITWATCH_DATA_DIR": str(data),
        "PROFITWATCH_COMMIT_INTERVAL_SECONDS": "1",
    }
    # At least one kill of each kind, the rest drawn; the order shuffled by the seed.
    phases = ["start-up", "recovery", "processing"][: min(KILLS, 3)]
    phases += [
        rng.choice(["start-up", "recovery", "processing", "processing"])
        for _ in range(KILLS - len(phases))
    ]
    rng.shuffle(phases)
    lifetimes: list[Lifetime] = []
    for phase in phases:
        life = Lifetime(phase)
        if phase == "recovery":
            shutil.rmtree(data, ignore_errors=True)  # only the changelog to restore from
        life.committed_at_start = committed_inputs()
        life.committed_before_scrape = life.committed_at_start
        worker = WorkerProcess(env, log)
        workers.append(worker)
        offset = worker.spawn(web=True)
        started = time.monotonic()
        # start-up: before Ready (~2 s on Kafka); processing: set once Ready is seen
        kill_at = started + rng.uniform(0.2, 1.5) if phase == "start-up" else float("inf")
        while True:
            now = time.monotonic()
            out = worker.output(offset)
            if phase == "recovery" and (RESTORING in out or READY in out):
                break  # READY: it had nothing to restore, or restored faster than we looked
            if phase == "processing" and READY in out:
                kill_at = now + rng.uniform(0.0, 2.0)  # across a commit or two
                phase = "processing (ready)"
            if phase != "recovery" and now >= kill_at:
                break
            if now - started > 60:
                raise AssertionError(f"no {life.phase} moment to kill at:\n{out[-2000:]}")
            if phase == "processing (ready)":
                committed = committed_inputs()
                got = _input_outcomes(port, inputs)
                if got is not None:
                    life.outcomes, life.committed_before_scrape = got, committed
            time.sleep(0.01)
        worker.kill9()
        life.landed = _landed(worker.output(offset))
        life.outstanding = total - committed_inputs()
        lifetimes.append(life)

    # A last worker, left to finish; its counters must be exactly what it consumed.
    before = committed_offsets(kafka_bootstrap, settings.app_id)
    final = WorkerProcess(env, log)
    workers.append(final)
    final.start(web=True)
    ends = wait_until_consumed(kafka_bootstrap, settings.app_id, sorted(inputs), n, 300)
    compared = check_equal(kafka_bootstrap, settings, exp)
    consumed = sum(end - before.get(tp, 0) for tp, end in ends.items())
    assert _input_outcomes(port, inputs) == consumed
    final.stop()

    # The changelog alone restores the same table.
    fresh_port = free_port()
    fresh = env | {
        "PROFITWATCH_DATA_DIR": str(tmp_path / "fresh"),
        "PROFITWATCH_WEB_PORT": str(fresh_port),
    }
    restored = WorkerProcess(fresh, tmp_path / "fresh.log")
    workers.append(restored)
    restored.start(web=True)
    check_api_figures(fresh_port, exp)

    # A killed lifetime's counters cannot be read after the kill; at its last scrape
    # they covered at least every record it had committed by then (it reads from the
    # offsets committed at its start): nothing is acknowledged uncounted.
    for life in lifetimes:
        assert life.outcomes >= life.committed_before_scrape - life.committed_at_start, life
    landed = Counter(life.landed for life in lifetimes)
    report = ", ".join(f"{k} {v}" for k, v in sorted(landed.items()))
    print(
        f"\nchaos: {total} input records, {len(lifetimes)} SIGKILLs ({report}); "
        f"{sum(1 for lf in lifetimes if lf.outstanding)} with records outstanding; "
        f"alerts of {compared} customers compared"
    )
    assert len(lifetimes) >= 3
    assert landed["start-up"] >= 1 and landed["processing"] >= 1
    assert sum(1 for lf in lifetimes if lf.outstanding) >= 2  # kills hit real work
