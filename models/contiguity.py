"""Each topic-partition's records are taken in offset order, none left out (no Kafka).

Everything downstream relies on it: the order of application queues records in offset
order, a customer's positions (streams/processor.py) take a record at or below the
highest applied offset of its path for a redelivery, and Faust commits an offset once
every record below it is acknowledged. Faust can still hand a stream a later record
of a partition than the next one: its fetch loop drops records of partitions it
counts as paused or whose read offset moved past them, around rebalances and seeks
(faust-streaming #216, #221). Taking that record would make the ones skipped look
like redeliveries to the next owner, and they would be lost.

So a record is taken only if it is the next one: offset `next` after the last one
taken in this assignment (records below it are redeliveries), or, for the first one,
at most the client's position at assignment (Faust seeks back to the committed
offset, which is not above it). A later one is a *gap*: the caller seeks the
partition back to where the next record must be and takes nothing past it until the
seek is done. Offsets can hold no record (transaction markers, aborted or compacted
records): if, re-read from there, the first record that comes is still past the gap
but not past the record that showed it, the offsets between held none and it is
taken. Records past that one are from before the seek: ignored, they come again.

A partition can also go silent: Faust drops what it fetched of a partition it pauses
for table recovery, and seeks back to committed offsets afterwards, but aiokafka's
`seek_to_committed` skips a partition with no offset committed (or 0), so its client
stays past the dropped records and nothing more comes. Once tables are recovered,
the caller seeks every partition with nothing taken yet to its start (`untaken`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

TP = tuple[str, int]  # (topic, partition)


class Verdict(Enum):
    NEXT = "next"  # take it
    AGAIN = "again"  # below the next offset: taken before in this assignment
    GAP = "gap"  # past the next offset: seek back to `Probe.back_to`
    EARLY = "early"  # past the next offset while a seek back is under way


@dataclass(eq=False, slots=True)
class Probe:
    """A seek back to `back_to`, asked because `got` came first."""

    tp: TP
    back_to: int
    got: int
    sought: bool = False  # the seek is done: what comes now is read from `back_to`


class Contiguity:
    """Per assigned topic-partition: which offset may be taken next."""

    def __init__(self) -> None:
        self.next: dict[TP, int] = {}  # after the last record taken
        self.start: dict[TP, int | None] = {}  # the position at assignment
        self.probes: dict[TP, Probe] = {}
        self.gaps = 0  # gaps found (each caused a seek back)
        self.empty = 0  # of those, offsets that held no record after all

    def assign(self, tp: TP, position: int | None) -> None:
        if tp not in self.next:
            self.start[tp] = position

    def revoke(self, tp: TP) -> None:
        self.next.pop(tp, None)
        self.start.pop(tp, None)
        self.probes.pop(tp, None)

    def judge(self, tp: TP, offset: int) -> tuple[Verdict, Probe | None]:
        """May the record at `offset` be taken now? With GAP, the seek to make."""
        nxt = self.next.get(tp)
        if nxt is not None:
            if offset < nxt:
                return Verdict.AGAIN, None
            if offset == nxt:
                return self._take(tp, offset)
            bound = nxt
        else:
            start = self.start.get(tp)
            if start is None or offset <= start:
                return self._take(tp, offset)
            bound = start
        probe = self.probes.get(tp)
        if probe is None:
            probe = self.probes[tp] = Probe(tp, bound, offset)
            self.gaps += 1
            return Verdict.GAP, probe
        if probe.sought and offset <= probe.got:
            self.empty += 1
            return self._take(tp, offset)
        return Verdict.EARLY, None

    def untaken(self) -> dict[TP, int]:
        """Where each assigned topic-partition with nothing taken yet must start: its
        position at assignment, where known."""
        return {
            tp: start
            for tp, start in self.start.items()
            if start is not None and tp not in self.next
        }

    def sought(self, probe: Probe) -> None:
        """The seek back of `probe` is done."""
        if self.probes.get(probe.tp) is probe:
            probe.sought = True

    def seek_failed(self, probe: Probe) -> None:
        """The seek did not happen: the next record past the gap asks again."""
        if self.probes.get(probe.tp) is probe:
            del self.probes[probe.tp]

    def _take(self, tp: TP, offset: int) -> tuple[Verdict, None]:
        self.next[tp] = offset + 1
        self.probes.pop(tp, None)
        return Verdict.NEXT, None
