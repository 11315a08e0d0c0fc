"""The customer table as the `Processor` uses it, writable outside a record's own stream.

With coalescing (streams/processor.py), a customer's state is written at a commit —
outside any record — or when it leaves the state cache — inside another customer's
record, maybe of another partition. Faust's table takes the partition of both the
RocksDB write and the changelog record from the record being processed
(`faust.streams.current_event()`), and refuses a write without one. Each write here
therefore runs with a stand-in for a record of the customer's own partition: every
input topic, the internal topic and the changelog are co-partitioned by customer id
(murmur2), so that partition is the one the customer's records arrive on.

`faust.streams._current_event` is private to Faust: the tests pin the behaviour this
relies on (tests/agents/test_agents.py, the crash and rebalance tests).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event

from streams.processor import partition_for


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
    def __init__(self, table: Any, source_topic: str, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        # One stand-in per partition, kept alive: the context holds a weak reference.
        self._records = [_RecordOf(source_topic, p) for p in range(partitions)]

    @contextmanager
    def _inside_partition_of(self, key: bytes) -> Iterator[None]:
        record: Any = self._records[partition_for(key, self.partitions)]
        token = _current_event.set(weakref.ref(record))
        try:
            yield
        finally:
            _current_event.reset(token)  # the record being processed, if any, again

    def __setitem__(self, key: bytes, value: bytes) -> None:
        with self._inside_partition_of(key):
            self.table[key] = value

    def __delitem__(self, key: bytes) -> None:
        with self._inside_partition_of(key):
            del self.table[key]

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self.table[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)
