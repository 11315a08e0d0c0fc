"""Records sent as whole batches at a commit (streams/record_batches.py), against a
producer that keeps what it is given and delivers when the test says so. The bytes
checked are the record batches themselves, read back with aiokafka's own reader."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import RecordMetadata, TopicPartition

from streams.record_batches import RecordBatches


class Broker:
    """A producer's `send_batch`, with a log per partition and deliveries held back."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.batches: list[tuple[str, int, list[bytes]]] = []  # keys of each batch, in order
        self.held: list[asyncio.Future[Any]] = []
        self.hold = False
        self.fail: Exception | None = None

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        records = [(r.key, r.value) for r in MemoryRecords(bytes(batch._build())).next_batch()]
        log = self.logs.setdefault((topic, partition), [])
        base = len(log)
        log.extend(records)
        self.batches.append((topic, partition, [k for k, _ in records]))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            fut.set_exception(self.fail)
        else:
            tp = TopicPartition(topic, partition)
            meta = RecordMetadata(topic, partition, tp, base, -1, 0, 0)
            if self.hold:
                self.held.append(fut)
                fut.meta = meta  # type: ignore[attr-defined]
            else:
                fut.set_result(meta)
        return fut

    def release(self) -> None:
        for fut in self.held:
            fut.set_result(fut.meta)  # type: ignore[attr-defined]
        self.held.clear()


async def test_a_shipment_keeps_each_partitions_order_and_reports_the_last_offset() -> None:
    broker, delivered = Broker(), []
    out = RecordBatches(lambda: broker, on_delivered=lambda t, p, o: delivered.append((t, p, o)))
    for i in range(5):
        out.append("cl", i % 2, f"k{i}".encode(), f"v{i}".encode())
    out.append("snap", 0, b"k9", None)  # a tombstone
    assert [k for _, _, k, _ in out.pending()] == [b"k0", b"k2", b"k4", b"k1", b"k3", b"k9"]
    out.ship()
    assert out.pending() == []
    await out.delivered()
    assert broker.logs[("cl", 0)] == [(b"k0", b"v0"), (b"k2", b"v2"), (b"k4", b"v4")]
    assert broker.logs[("cl", 1)] == [(b"k1", b"v1"), (b"k3", b"v3")]
    assert broker.logs[("snap", 0)] == [(b"k9", None)]
    assert sorted(delivered) == [("cl", 0, 2), ("cl", 1, 1), ("snap", 0, 0)]
    # one batch per partition: no split without last_record_alone, none needed for size
    assert len(broker.batches) == 3


async def test_full_batches_split_and_the_last_record_can_go_alone() -> None:
    """tansu answers "latest" with the base offset of the last batch + 1: with
    `last_record_alone` every shipment ends a partition with a one-record batch."""
    broker, delivered = Broker(), []
    out = RecordBatches(
        lambda: broker,
        last_record_alone=True,
        batch_bytes=300,
        on_delivered=lambda t, p, o: delivered.append(o),
    )
    for i in range(10):
        out.append("cl", 0, f"k{i}".encode(), b"x" * 50)
    out.ship()
    await out.delivered()
    sizes = [len(keys) for _, _, keys in broker.batches]
    assert sum(sizes) == 10 and len(sizes) >= 3 and sizes[-1] == 1
    assert broker.batches[-1][2] == [b"k9"]
    assert [k for k, _ in broker.logs[("cl", 0)]] == [f"k{i}".encode() for i in range(10)]
    assert delivered == [9]
    out.append("cl", 0, b"only", b"v")  # a single record is already alone
    out.ship()
    await out.delivered()
    assert broker.batches[-1][2] == [b"only"] and delivered == [9, 10]


async def test_delivered_waits_for_every_shipment_and_they_go_in_order() -> None:
    broker = Broker()
    broker.hold = True
    out = RecordBatches(lambda: broker)
    out.append("cl", 0, b"a", b"1")
    out.ship()
    out.append("cl", 0, b"a", b"2")
    out.ship()
    waiting = asyncio.ensure_future(out.delivered())
    await asyncio.sleep(0.01)
    # the second shipment waits for the first's delivery: a key's records keep order
    assert not waiting.done() and broker.logs[("cl", 0)] == [(b"a", b"1")]
    broker.release()
    await asyncio.sleep(0.01)
    assert broker.logs[("cl", 0)] == [(b"a", b"1"), (b"a", b"2")]
    assert not waiting.done()
    broker.release()
    await asyncio.wait_for(waiting, 1)


async def test_a_failed_shipment_fails_every_later_wait() -> None:
    """Its records may be lost: no later commit may go out."""
    broker = Broker()
    broker.fail = RuntimeError("broker said no")
    out = RecordBatches(lambda: broker)
    out.append("cl", 0, b"a", b"1")
    out.ship()
    with pytest.raises(RuntimeError, match="broker said no"):
        await out.delivered()
    broker.fail = None
    out.append("cl", 0, b"b", b"2")
    out.ship()
    with pytest.raises(RuntimeError, match="broker said no"):
        await out.delivered()


async def test_nothing_to_ship_is_a_no_op() -> None:
    out = RecordBatches(lambda: pytest.fail("no producer needed"))
    out.ship()
    await out.delivered()
