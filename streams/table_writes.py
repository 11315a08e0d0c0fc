"""The customer table as the `Processor` uses it, writable outside a record's own stream.

With coalescing (streams/processor.py), a customer's state is written at a commit —
outside any record — or when it leaves the state cache — inside another customer's
record, maybe of another partition. Faust's table takes the partition of both the
RocksDB write and the changelog record from the record being processed
(`faust.streams.current_event()`), and refuses a write without one. Each write here
therefore runs with a stand-in for a record of the customer's own partition: every
input topic, the internal topic and the changelog are co-partitioned by customer id
(murmur2), so that partition is the one the customer's records arrive on.

A write goes to the table's store at once and its changelog record to a
`RecordBatches`, shipped at the next commit in whole record
batches (streams/record_batches.py) instead of one Faust send per record; the
persisted offset Faust keeps per partition (where its recovery starts reading the
changelog) is set when a shipment is delivered, as Faust's own delivery callback
does per record. The records are the ones Faust writes: raw key and value bytes on
the customer's partition, a null value for a delete.

`faust.streams._current_event` is private to Faust (streams/faust_private.py): the
tests pin the behaviour this relies on (tests/agents/test_agents.py, the crash and
rebalance tests).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from models.partitioner import partition_for
from streams.faust_private import CURRENT_EVENT
from streams.record_batches import RecordBatches


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    partition: int


class _RecordOf:
    """What Faust's table reads of the current event: `message.topic/.partition`."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


class PartitionedTable(MutableMapping[bytes, bytes]):
    def __init__(
        self, table: Any, source_topic: str, partitions: int, batches: RecordBatches
    ) -> None:
        self.table = table
        self.partitions = partitions
        # One stand-in per partition, kept alive: the context holds a weak reference.
        self._records = [_RecordOf(source_topic, p) for p in range(partitions)]
        self.batches = batches
        self.changelog = table.changelog_topic.get_topic_name()

    def on_delivered(self, topic: str, partition: int, offset: int) -> None:
        """A shipment's records up to `offset` are in the changelog."""
        if topic == self.changelog:
            self.table.data.set_persisted_offset(TP(topic, partition), offset)

    @contextmanager
    def _inside(self, partition: int) -> Iterator[None]:
        record: Any = self._records[partition]
        token = CURRENT_EVENT.set(weakref.ref(record))
        try:
            yield
        finally:
            CURRENT_EVENT.reset(token)  # the record being processed, if any, again

    def __setitem__(self, key: bytes, value: bytes) -> None:
        partition = partition_for(key, self.partitions)
        with self._inside(partition):
            self.table.data[key] = value  # the store only: the changelog goes batched
        self.batches.append(self.changelog, partition, key, value)

    def __delitem__(self, key: bytes) -> None:
        partition = partition_for(key, self.partitions)
        with self._inside(partition):
            del self.table.data[key]
        self.batches.append(self.changelog, partition, key, None)

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self.table[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
