"""The order of application (contract section 9): which queued record goes next.

A *queue* is one input (topic, partition), in offset order: records are never
reordered within it. Of the records at the heads of the queues, the next one applied
is the one with the least `order_key`: the earliest event time (a rejected record has
none and counts as earliest), then the lower partition, then the topic listed first
in `Topics.input_kinds()`. Replay merges all queues of a file with it; the service
merges each partition group's queues, where the partition part of the key is the same
for all, so the rule is the same one. Kafka Streams' `PartitionGroup` picks the next
record of a task the same way, by the head timestamps of its partitions.

A head may go only when no queue that can still receive an earlier record is empty:
a queue with nothing buffered whose partition has records not yet received (it is
*behind*) holds everything back; a caught-up queue holds nothing back. Who knows
which queues are behind tells the merge (`behind`): replay from the records per
queue it counted in the file, the service from the consumer's positions and end
offsets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from heapq import heappop, heappush
from itertools import count
from typing import Final, Generic, TypeVar

Q = TypeVar("Q", bound=Hashable)
T = TypeVar("T")

# Earlier than any event time (epoch µs): a rejected record is applied, that is
# dead-lettered, as soon as it heads its queue.
REJECTED: Final = -(1 << 63)

OrderKey = tuple[int, int, int]  # (event time µs or REJECTED, partition, topic rank)


def order_key(at_us: int | None, partition: int, topic_rank: int) -> OrderKey:
    """The comparison key of a queued record; `at_us` None for a rejected record."""
    return (REJECTED if at_us is None else at_us, partition, topic_rank)


class _Queue(Generic[Q, T]):
    __slots__ = ("behind", "items", "name")

    def __init__(self, name: Q) -> None:
        self.name = name
        self.items: deque[tuple[OrderKey, T]] = deque()
        self.behind = True  # until told otherwise: what has not been received may come


class HeadMerge(Generic[Q, T]):
    """Queues of keyed records; `pop` takes the head with the least key.

    The heap holds one entry per non-empty queue, its head, so a record costs one
    push and one pop of a heap as small as the number of queues. A queue starts
    behind (nothing known of it yet counts as records still to come) until
    `behind(queue, False)`; `ready` says whether the least head may go.
    """

    __slots__ = ("_blocking", "_heap", "_held", "_queues", "_serial")

    def __init__(self, queues: Iterable[Q] = ()) -> None:
        self._queues: dict[Q, _Queue[Q, T]] = {}
        self._heap: list[tuple[OrderKey, int, _Queue[Q, T]]] = []
        self._serial = count()  # heap entries never compare queues
        self._blocking = 0  # queues that are empty and behind
        self._held = 0
        for name in queues:
            self._queue(name)

    def _queue(self, name: Q) -> _Queue[Q, T]:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue(name)
            self._blocking += 1
        return q

    def push(self, queue: Q, key: OrderKey, item: T) -> None:
        """Append a record to the tail of its queue."""
        q = self._queues.get(queue) or self._queue(queue)
        items = q.items
        if not items:
            heappush(self._heap, (key, next(self._serial), q))
            self._blocking -= q.behind
        items.append((key, item))
        self._held += 1

    def behind(self, queue: Q, behind: bool) -> None:
        """Whether the queue's partition has records not yet received."""
        q = self._queues.get(queue) or self._queue(queue)
        if q.behind != behind:
            q.behind = behind
            if not q.items:
                self._blocking += 1 if behind else -1

    @property
    def ready(self) -> bool:
        """A record is held and no empty queue is behind: the least head may go."""
        return bool(self._heap) and not self._blocking

    def blocking(self) -> list[Q]:
        """The queues that hold everything back: empty, and behind."""
        return [q.name for q in self._queues.values() if q.behind and not q.items]

    def peek(self) -> tuple[OrderKey, Q] | None:
        """The least head's key and queue, or None when nothing is held."""
        if not self._heap:
            return None
        key, _, q = self._heap[0]
        return key, q.name

    def pop(self) -> tuple[Q, T]:
        """Remove and return the least head, whether or not it is `ready`
        (IndexError when nothing is held)."""
        _, _, q = heappop(self._heap)
        items = q.items
        _, item = items.popleft()
        self._held -= 1
        if items:
            heappush(self._heap, (items[0][0], next(self._serial), q))
        else:
            self._blocking += q.behind
        return q.name, item

    def drop(self, queue: Q) -> list[T]:
        """Forget a queue and everything it holds (its partition was revoked)."""
        q = self._queues.pop(queue, None)
        if q is None:
            return []
        if q.items:
            self._heap = [e for e in self._heap if e[2] is not q]
            self._heap.sort()  # a sorted list is a heap
            self._held -= len(q.items)
        else:
            self._blocking -= q.behind
        return [item for _, item in q.items]

    def held(self, queue: Q) -> int:
        q = self._queues.get(queue)
        return len(q.items) if q is not None else 0

    def __len__(self) -> int:
        return self._held
