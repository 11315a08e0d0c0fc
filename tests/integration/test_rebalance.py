"""Rebalances mid-stream: two workers share a backlog and a third joins; then the rest
of the records arrives and one of the first two is killed with SIGKILL before it has
committed them. The partitions move twice while records are held for their turn; the
outcome is still `replay`'s, and every customer is answered afterwards by every
surviving worker (its own, or routed to the owner).

The kill is mid-stream by construction, not by timing: the last records are produced
after the backlog is committed, and the workers wait `max_idle_ms` for a caught-up
queue, so every partition group still holds records when the producer is done. That
wait also makes the service apply the live part as replay does (all of it is on the
broker within that wait), so replay runs it as a phase of its own."""

from __future__ import annotations

import time
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
    metric,
    settled,
    split_referrals,
    wait_for_progress,
)
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import (
    committed_offsets,
    committed_total,
    end_offsets,
    wait_until_consumed,
)


def _assigned(worker: WorkerProcess) -> int:
    return worker.log_text().count("Setting newly assigned partitions")


def _wait_assigned(worker: WorkerProcess, times: int, timeout_s: float = 90.0) -> int:
    """Until the worker has taken `times` assignments. The group drops a killed member
    only when its session ends (10 s), which can come after the stream is done when
    the killed worker's own partitions were already caught up."""
    deadline = time.monotonic() + timeout_s
    while _assigned(worker) < times and time.monotonic() < deadline:
        time.sleep(0.2)
    return _assigned(worker)


# How long a caught-up queue holds its group back: longer than the last records take
# to produce, so they are merged as replay merges them, and a group holds records for
# that long after they are all produced (the kill comes well inside it).
MAX_IDLE_MS = 8000


@pytest.mark.timeout(600)
def test_a_worker_joining_and_one_killed_mid_stream_change_nothing(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    inputs = sorted(settings.topics.input_kinds())
    n = settings.partitions
    records = generated(200, 170, 41, settings)
    ref, rest = split_referrals(records, settings)
    cut = len(rest) * 4 // 5  # the backlog; the rest comes live, just before the kill
    backlog, live = rest[:cut], rest[cut:]
    exp = Expected(settings).phase(ref).phase(backlog).phase(live)
    workers.append(settled(kafka_bootstrap, env, settings, tmp_path / "w0.log", ref))
    send_all(kafka_bootstrap, (to_kafka(r) for r in backlog))
    backlog_total = sum(end_offsets(kafka_bootstrap, inputs, n).values())

    def committed() -> int:
        return committed_total(kafka_bootstrap, settings.app_id, inputs)

    def worker(name: str) -> tuple[WorkerProcess, int]:
        port = free_port()
        w = WorkerProcess(
            env
            | {
                "PROFITWATCH_WEB_PORT": str(port),
                "PROFITWATCH_DATA_DIR": str(tmp_path / name),
                "PROFITWATCH_COMMIT_INTERVAL_SECONDS": "1",
                "PROFITWATCH_MAX_IDLE_MS": str(MAX_IDLE_MS),
            },
            tmp_path / f"{name}.log",
        )
        workers.append(w)
        return w, port

    (a, _), (b, b_port), (c, c_port) = worker("a"), worker("b"), worker("c")
    a.start(web=True)
    b.start(web=True)
    # The third joins once the two have made progress, well before the end.
    joined_at = wait_for_progress(committed, backlog_total)
    c.start(web=True)  # ready: the rebalance it caused is over
    wait_until_consumed(kafka_bootstrap, settings.app_id, inputs, n, timeout_s=300)
    # Then the rest arrives and one of the first two dies at once, its groups holding
    # records for `max_idle_ms`: whatever it committed by then is final.
    send_all(kafka_bootstrap, (to_kafka(r) for r in live))
    a.kill9()
    at_kill = committed_offsets(kafka_bootstrap, settings.app_id)
    ends = end_offsets(kafka_bootstrap, inputs, n)
    killed_at, total = sum(at_kill.get(tp, 0) for tp in ends), sum(ends.values())
    # Every partition group, the killed worker's too, had records not yet committed.
    holding = {tp[1] for tp, end in ends.items() if at_kill.get(tp, 0) < end}
    wait_until_consumed(kafka_bootstrap, settings.app_id, inputs, n, timeout_s=300)
    # The survivors' order counters, shown with a failure: records applied after a later
    # one of their group, waits given up on, gaps read again, Faust's acks refused.
    for name, port in (("b", b_port), ("c", c_port)):
        late = metric(port, "profitwatch_late_records_total")
        enforced = metric(port, "profitwatch_order_enforced_total")
        gaps = metric(port, "profitwatch_offset_gaps_total")
        skipped = metric(port, "profitwatch_skipped_acks_total")
        print(
            f"{name}: late records {late:.0f}, order enforced {enforced:.0f}, "
            f"offset gaps {gaps:.0f}, Faust's acks refused {skipped:.0f}"
        )
    compared = check_equal(kafka_bootstrap, settings, exp)
    assert compared >= 150

    # The stream was still running at both moments, and the partitions really moved.
    assert joined_at < backlog_total and killed_at < total, (joined_at, killed_at, total)
    assert holding == set(range(n)), (holding, at_kill, ends)
    assert _wait_assigned(b, 3) >= 3  # its first, the third's join, the kill
    assert _wait_assigned(c, 2) >= 2  # its first, the kill

    # The survivors may still be rebalancing: they answer 503 with Retry-After for a
    # moment, and a client waits as told.
    for port in (b_port, c_port):
        check_api_figures(port, exp)
    print(
        f"\nrebalance: {total} input records; third worker joined at {joined_at}, "
        f"one killed at {killed_at}; alerts of {compared} customers compared"
    )
