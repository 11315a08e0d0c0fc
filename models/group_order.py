"""The order of application in the running service (contract section 9), without Kafka.

Partition `p` of the input topics is one *group*; each of its topic-partitions is a
queue (`models/application_order.py`: the same key and tie rules as replay). A record
is released when it is the least head of its group and no empty queue of the group
holds it back. An empty queue holds its group back while its partition has records on
the broker not yet received (the end offset is past the next offset this worker will
receive; an unknown end or position counts as behind), for at most `max_lag_wait_ms`
(offsets that hold no record: transaction markers, compacted gaps); a caught-up queue
holds nothing back, or `max_idle_ms` when set (late producers). Going on without a
queue that still holds back is *enforced* (Kafka Streams' `enforced-processing`) and
counted. These are Kafka Streams' `PartitionGroup` rules with KIP-695's lag check.

The caller tells it what Kafka knows: which partitions are assigned, each
topic-partition's position at assignment, its end offset (`end_offset`) and how far
this worker has fetched it (`fetched`: records fetched but not yet queued are in
transit) and how far its client has read it (`position`): a wait for records in
transit or not yet read is not timed out (KIP-695), nor one on a partition not
fetched yet in this assignment (its end offset unknown: the first fetch tells); only
a partition read to its end with nothing more arriving (offsets that hold no record)
runs into `max_lag_wait_ms`. Held
records are never acknowledged; a revoke drops them, and the partition's next owner
receives them again. Memory: beyond `max_held` records the topic-partitions that are
ahead (have records buffered) should be paused (`flow`), never one its group waits on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from models.application_order import HeadMerge, order_key

T = TypeVar("T")

TP = tuple[str, int]  # (topic, partition)
# (topic, partition) -> an offset, or None when unknown
OffsetOf = Callable[[str, int], int | None]


@dataclass(slots=True)
class Released(Generic[T]):
    """A record whose turn it is: applied by the caller now, in this order."""

    item: T
    topic: str
    partition: int
    offset: int
    at_us: int | None  # None: rejected
    held_ms: float  # from arrival to release
    late: bool  # earlier than the latest event this group applied before it


@dataclass(slots=True)
class _Group(Generic[T]):
    merge: HeadMerge[str, tuple[int, float, int | None, T]]
    latest_at: int | None = None  # the latest event time applied
    wait_since: dict[str, float] = field(default_factory=dict)  # per empty queue
    enforced: set[str] = field(default_factory=set)  # queues given up on this wait


class GroupOrder(Generic[T]):
    """Every assigned group's queues; `receive` records, `release` what may go."""

    def __init__(
        self,
        topics: Sequence[str],
        end_offset: OffsetOf,
        fetched: OffsetOf | None = None,
        position: OffsetOf | None = None,
        *,
        max_idle_ms: float = 0,
        max_lag_wait_ms: float = 2000,
        max_held: int = 20_000,
    ) -> None:
        self.topics = tuple(topics)  # in the order of section 2: ties go by it
        self._rank = {t: i for i, t in enumerate(self.topics)}
        self.end_offset = end_offset
        # The next offset past what this worker has fetched (it may not have reached
        # the queue yet): records in transit are coming, so waiting for them is bounded
        # by nothing but their arrival.
        self.fetched = fetched
        # The consumer client's position (how far it has read the partition from the
        # broker, past offsets that hold no record too): while it is short of the end
        # offset the records are still to be fetched, and the wait is not timed out
        # either (KIP-695); once it is at the end and nothing came, the offsets held
        # no record, and `max_lag_wait_ms` bounds the wait.
        self.position = position
        self.max_idle_ms = max_idle_ms
        self.max_lag_wait_ms = max_lag_wait_ms
        self.max_held = max_held
        self.groups: dict[int, _Group[T]] = {}
        self.next_offset: dict[TP, int] = {}  # the next offset this worker will receive
        # The next offset after the last one this worker received: the guard against
        # queueing a record twice. Apart from `next_offset`, which starts at the
        # position at assignment: records below that position Faust can still deliver
        # (it seeks back to the committed offsets once tables are recovered), and
        # taking them for received ones dropped them unacknowledged, then committed
        # past them (a customer's first record lost in a rebalance test).
        self.received: dict[TP, int] = {}
        self.held = 0
        self.enforced = 0  # times a group went on without a queue that held it back
        self.late = 0  # records applied earlier in event time than their group's latest
        self.paused: set[TP] = set()
        self.pauses = 0  # topic-partitions paused by the memory bound, ever

    # ---- assignment ----------------------------------------------------------------

    def assign(self, positions: dict[TP, int | None]) -> None:
        """Partitions assigned, with each topic-partition's position (None: unknown)."""
        for (topic, partition), position in positions.items():
            self._group(partition)
            if position is not None and (topic, partition) not in self.next_offset:
                self.next_offset[(topic, partition)] = position

    def revoke(self, partitions: Iterable[int]) -> list[T]:
        """Forget these groups; what they held is dropped, never acknowledged."""
        dropped: list[T] = []
        for p in set(partitions):
            g = self.groups.pop(p, None)
            if g is not None:
                for topic in self.topics:
                    dropped += [item for _, _, _, item in g.merge.drop(topic)]
            for topic in self.topics:
                self.next_offset.pop((topic, p), None)
                self.received.pop((topic, p), None)
                self.paused.discard((topic, p))
        self.held -= len(dropped)
        return dropped

    def _group(self, partition: int) -> _Group[T]:
        g = self.groups.get(partition)
        if g is None:
            g = self.groups[partition] = _Group(HeadMerge(self.topics))
        return g

    # ---- records -----------------------------------------------------------------

    def receive(
        self,
        topic: str,
        partition: int,
        offset: int,
        at_us: int | None,
        item: T,
        now_ms: float,
    ) -> bool:
        """A record of an input topic-partition, in offset order (`at_us` None when
        it is rejected: it goes as soon as it heads its queue). False, and nothing
        queued, for an offset received before: Faust seeks back to the committed
        offsets when it finds its flow stopped, and delivers again what this worker
        may still hold unacked; queued twice, a record would overtake itself."""
        seen = self.received.get((topic, partition))
        if seen is not None and offset < seen:
            return False
        g = self._group(partition)
        g.merge.push(
            topic, order_key(at_us, partition, self._rank[topic]), (offset, now_ms, at_us, item)
        )
        self.next_offset[(topic, partition)] = offset + 1
        self.received[(topic, partition)] = offset + 1
        g.wait_since.pop(topic, None)
        g.enforced.discard(topic)
        self.held += 1
        return True

    def release(self, now_ms: float, partitions: Iterable[int] | None = None) -> list[Released[T]]:
        """Every record whose turn it is, of these groups (default: all), in order."""
        out: list[Released[T]] = []
        for p in self.groups if partitions is None else partitions:
            g = self.groups.get(p)
            if g is not None and g.merge:
                self._release(p, g, now_ms, out)
        return out

    def _release(self, p: int, g: _Group[T], now_ms: float, out: list[Released[T]]) -> None:
        merge = g.merge
        while merge:
            for topic in self.topics:
                if not merge.held(topic):
                    merge.behind(topic, self._holds(p, g, topic, now_ms))
            if not merge.ready:
                return
            topic, (offset, arrived, at, item) = merge.pop()
            late = at is not None and g.latest_at is not None and at < g.latest_at
            if late:
                self.late += 1
            elif at is not None:
                g.latest_at = at
            self.held -= 1
            out.append(Released(item, topic, p, offset, at, now_ms - arrived, late))
        g.wait_since.clear()  # nothing held: no wait is running
        g.enforced.clear()

    def _holds(self, p: int, g: _Group[T], topic: str, now_ms: float) -> bool:
        """Does this empty queue hold its group back now?"""
        end = self.end_offset(topic, p)
        if end is None:
            # Nothing fetched of it yet in this assignment: its lag is unknown, and
            # KIP-695 waits for it (the first fetch tells), never runs out of time.
            g.wait_since[topic] = now_ms
            return True
        nxt = self.next_offset.get((topic, p))
        if nxt is None or end > nxt:
            fetched = self.fetched(topic, p) if self.fetched is not None else None
            if fetched is not None and nxt is not None and fetched > nxt:
                g.wait_since[topic] = now_ms  # in transit: it will arrive
                return True
            pos = self.position(topic, p) if self.position is not None else None
            if pos is not None and end is not None and pos < end:
                g.wait_since[topic] = now_ms  # not read from the broker yet: it will be
                return True
            limit = self.max_lag_wait_ms  # behind, or not known to be caught up
        elif self.max_idle_ms > 0:
            limit = self.max_idle_ms  # caught up; waits for late producers
        else:
            return False
        since = g.wait_since.setdefault(topic, now_ms)
        if now_ms - since < limit:
            return True
        if topic not in g.enforced:
            g.enforced.add(topic)
            self.enforced += 1
        return False

    def waiting_on(self) -> list[TP]:
        """The topic-partitions whose groups wait for them: empty, and holding back."""
        out: list[TP] = []
        for p, g in self.groups.items():
            if g.merge and not g.merge.ready:
                out += [(t, p) for t in g.merge.blocking()]
        return out

    # ---- memory --------------------------------------------------------------------

    def flow(self) -> tuple[set[TP], set[TP]]:
        """(to pause, to resume), given what is held: beyond `max_held` every
        topic-partition with records buffered is paused; a paused one whose queue has
        run empty is resumed (its group may wait on it), and all are once the held
        records are below half the bound. The caller must not lose what a paused
        partition had fetched already (see streams/faust_private.py)."""
        pause: set[TP] = set()
        if self.held > self.max_held:
            for p, g in self.groups.items():
                for topic in self.topics:
                    if g.merge.held(topic) and (topic, p) not in self.paused:
                        pause.add((topic, p))
        below_half = self.held < self.max_held // 2
        resume = {(t, p) for t, p in self.paused if below_half or not self.groups[p].merge.held(t)}
        self.paused |= pause
        self.paused -= resume
        self.pauses += len(pause)
        return pause, resume
