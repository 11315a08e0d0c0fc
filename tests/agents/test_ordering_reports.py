"""What the order of application reports (streams/ordering.py): a group waiting on a
partition whose position never moves (such a wait has no time bound), and records
ignored as redeliveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

import streams.ordering
from models.contiguity import Verdict
from models.settings import Settings
from streams.agents import Service


class _Consumer:
    """Kafka says 100 records are there; the client's position stays at 5."""

    def __init__(self) -> None:
        self.position_of = 5
        self.sought: list[tuple[str, int, int]] = []

    def highwater(self, tp: Any) -> int:
        return 100

    async def position(self, tp: Any) -> int:
        return self.position_of

    async def seek(self, tp: Any, offset: int) -> None:
        self.sought.append((tp.topic, tp.partition, offset))

    def pause_partitions(self, tps: Any) -> None:
        raise AssertionError("nothing is held beyond the bound here")

    def resume_partitions(self, tps: Any) -> None:
        raise AssertionError("nothing was paused")


@pytest.fixture
def ordered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    svc = Service(Settings(store="memory://", data_dir=tmp_path, sweep_interval_seconds=0))
    svc.app.finalize()
    svc.app.conf.store = URL("memory://")
    ordered = svc.ordered
    ordered.app = SimpleNamespace(consumer=_Consumer())
    clock = [1000.0]
    monkeypatch.setattr(streams.ordering, "_seconds", lambda: clock[0])
    topics = sorted(ordered.inputs)
    ordered.order.assign({(t, 0): 0 for t in topics})
    for t in topics:  # as on_assigned does: every partition starts at its position 0
        ordered.contiguity.assign((t, 0), 0)
    # One record of the first topic: partition 0's group now waits on the others.
    assert ordered.contiguity.judge((topics[0], 0), 0)[0] is Verdict.NEXT
    assert ordered.order.receive(topics[0], 0, 0, 1, "record", clock[0] * 1000)
    yield ordered, clock


async def test_a_wait_whose_position_does_not_move_is_reported(
    ordered: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ordered, clock = ordered
    caplog.set_level(logging.WARNING, logger="streams.ordering")
    for _ in range(3):  # ticks at 0, 10 and 20 s: not yet
        await ordered.tick()
        clock[0] += 10
    assert not caplog.records
    clock[0] += 15  # 45 s
    await ordered.tick()
    reports = [r.getMessage() for r in caplog.records]
    waited_on = {t for t, _ in ordered.order.waiting_on()}
    assert len(reports) == len(waited_on) >= 1
    assert all("position 5 has not moved" in r and "end offset 100" in r for r in reports)
    assert all("wait on" in r and "for 45 s" in r for r in reports)
    await ordered.tick()  # reported once per STALL_REPORT_S, not at every tick
    assert len(caplog.records) == len(reports)
    assert ordered.order.held == 1  # still waiting: the report changes nothing


async def test_a_position_that_moves_is_no_stall(
    ordered: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ordered, clock = ordered
    caplog.set_level(logging.WARNING, logger="streams.ordering")
    for _ in range(10):  # 100 s of waiting, but the client reads on
        await ordered.tick()
        clock[0] += 10
        ordered.app.consumer.position_of += 1
    assert not caplog.records


async def test_a_record_below_one_received_before_is_logged_once(
    ordered: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ordered, _ = ordered
    topic = sorted(ordered.inputs)[0]  # the fixture's record: offset 0 of partition 0
    caplog.set_level(logging.WARNING, logger="streams.ordering")
    for _ in range(3):
        message = SimpleNamespace(topic=topic, partition=0, offset=0, headers=None)
        ordered.on_event(SimpleNamespace(message=message, value=b"{}", key=b"c1"))
    assert [r.getMessage() for r in caplog.records] == [
        f"{topic}[0] offset 0 is below the next offset 1: taken for a redelivery, "
        "not queued again (logged once per assignment)"
    ]
    assert ordered.rereceived == {(topic, 0): 3}
    assert ordered.order.held == 1  # not queued again
    ordered.on_revoked([SimpleNamespace(topic=topic, partition=0)])
    assert ordered.rereceived == {}


async def test_a_record_after_a_gap_is_not_taken_and_its_partition_is_read_again(
    ordered: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ordered, _ = ordered
    topic = sorted(ordered.inputs)[0]  # offset 0 of partition 0 was taken
    caplog.set_level(logging.WARNING, logger="streams.ordering")

    def deliver(offset: int) -> None:
        message = SimpleNamespace(topic=topic, partition=0, offset=offset, headers=None)
        ordered.on_event(SimpleNamespace(message=message, value=b"{}", key=b"c1"))

    deliver(2)  # offset 1 never came
    deliver(3)
    assert ordered.order.held == 1  # neither queued
    await asyncio.sleep(0)  # the seek back runs
    assert ordered.app.consumer.sought == [(topic, 0, 1)]
    assert [r.getMessage() for r in caplog.records] == [
        f"{topic}[0] offset 2 came before offset 1: the records between were not "
        "delivered (or hold none); reading the partition again from 1"
    ]
    for offset in (1, 2, 3):  # read again from 1
        deliver(offset)
    assert ordered.order.held == 4
    assert ordered.contiguity.gaps == 1 and ordered.contiguity.empty == 0


async def test_once_tables_are_recovered_untaken_partitions_are_sought_to_their_start(
    ordered: Any,
) -> None:
    ordered, _ = ordered
    taken, other = sorted(ordered.inputs)[:2]
    ordered.contiguity.assign((other, 0), 0)  # nothing of it taken yet
    ordered.contiguity.assign((other, 1), 7)
    await ordered.on_rebalanced()
    assert (taken, 0, 0) not in ordered.app.consumer.sought  # its record 0 was taken
    assert {(other, 0, 0), (other, 1, 7)} <= set(ordered.app.consumer.sought)
