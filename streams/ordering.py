"""The order of application in the worker (contract section 9), on Faust's public API.

The ingest agent hands every input event here. It is judged at once (decoded, or
rejected: the order needs its event time), queued in its partition's group
(`models/group_order.py`, the same rule as replay) and applied when its turn comes,
from the agent or from a timer (waits that end with time, end offsets that move).
What Kafka knows comes from Faust's consumer: `highwater(tp)` (the end offset as of
the last fetch; None before one) and, at assignment, `position(tp)`. Beyond
`max_held_records` the topic-partitions that are ahead are paused
(`consumer.pause_partitions`) until the held records drain. A revoke drops the held
records of the revoked partitions, never acknowledged: their next owner reads them.
Before any of that, every record of an input or the internal topic must be the next
one of its partition (`models/contiguity.py`): one that comes after a gap is not
taken, and the partition is sought back to the record that did not come.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TP

from models.contiguity import Contiguity, Probe, Verdict
from models.group_order import GroupOrder
from models.settings import Settings
from streams.acks import AckAfterDelivery
from streams.faust_private import deliver_fetched, skipped_acks
from streams.metrics import Metrics
from streams.processor import Processor

log = logging.getLogger(__name__)

# A group waiting this long on a partition whose position does not move is reported
# (again every as long): such a wait has no bound, since Kafka says records are there.
STALL_REPORT_S = 30.0


_seconds = time.monotonic  # the clock of every wait here (a test sets its own)


def _now_ms() -> float:
    return _seconds() * 1000.0


class OrderedInput:
    def __init__(
        self,
        app: Any,
        settings: Settings,
        processor: Processor,
        acks: AckAfterDelivery,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.processor = processor
        self.acks = acks
        self.metrics = metrics
        self.inputs = frozenset(settings.topics.input_kinds())
        # Offsets taken in order, none left out: every topic whose records change state.
        self.guarded = self.inputs | {settings.topics.internal}
        self.contiguity = Contiguity()
        self._seeks: set[asyncio.Task[None]] = set()  # seeks back under way
        # The next offset past the last record of each input partition that entered
        # Faust (its Conductor, before the agent's queue): a sensor sees every one.
        self.fetched: dict[tuple[str, int], int] = {}
        app.sensors.add(_Fetched(self.fetched, self.inputs))
        # The client's position of the partitions a group waits on, asked at each tick.
        self.positions: dict[tuple[str, int], int] = {}
        # Of those: (since when, at which position, last reported) while it stays put.
        self._still: dict[tuple[str, int], tuple[float, int | None, float]] = {}
        # Records taken for redeliveries (below an offset received before), per
        # topic-partition since its assignment: the first one is logged.
        self.rereceived: dict[tuple[str, int], int] = {}
        self.order: GroupOrder[Any] = GroupOrder(
            tuple(settings.topics.input_kinds()),  # in section 2's order: ties go by it
            self._end_offset,
            self._fetched,
            self._position,
            max_idle_ms=settings.max_idle_ms,
            max_lag_wait_ms=settings.max_lag_wait_ms,
            max_held=settings.max_held_records,
        )
        metrics.watch_order(self.order, self.contiguity, lambda: skipped_acks(app))

    def _end_offset(self, topic: str, partition: int) -> int | None:
        try:
            end: int | None = self.app.consumer.highwater(TP(topic, partition))
        except Exception:  # no consumer yet (ConsumerNotStarted), or partition unknown
            return None
        return end

    def _fetched(self, topic: str, partition: int) -> int | None:
        return self.fetched.get((topic, partition))

    def _position(self, topic: str, partition: int) -> int | None:
        return self.positions.get((topic, partition))

    # ---- records ---------------------------------------------------------------------

    def admit(self, event: Any) -> bool:
        """Is this record the next one of its partition (else it is not taken: not
        applied, not acknowledged)? A gap before it starts a seek back to the first
        record missing."""
        m = event.message
        verdict, probe = self.contiguity.judge((m.topic, m.partition), m.offset)
        if verdict is Verdict.NEXT:
            return True
        if verdict is Verdict.AGAIN:
            self._rereceived(m.topic, m.partition, m.offset)
        elif probe is not None:
            self._seek_back(probe)
        return False

    def _seek_back(self, probe: Probe) -> None:
        topic, partition = probe.tp
        log.warning(
            "%s[%d] offset %d came before offset %d: the records between were not "
            "delivered (or hold none); reading the partition again from %d",
            topic,
            partition,
            probe.got,
            probe.back_to,
            probe.back_to,
        )
        task = asyncio.ensure_future(self._seek(probe))
        self._seeks.add(task)
        task.add_done_callback(self._seeks.discard)

    async def _seek(self, probe: Probe) -> None:
        try:
            await self.app.consumer.seek(TP(*probe.tp), probe.back_to)
        except Exception as exc:  # e.g. revoked meanwhile: the next record asks again
            log.warning("seeking %s[%d] back failed: %r", *probe.tp, exc)
            self.contiguity.seek_failed(probe)
        else:
            self.contiguity.sought(probe)

    def on_event(self, event: Any) -> None:
        """An input event from the agent (manual acks): queue it, apply what may go."""
        if not self.admit(event):
            return
        m = event.message
        decoded = self.processor.decode_input(m.topic, event.value, m.headers)
        if m.topic not in self.inputs:  # on no queue (rejected by the decoder): at once
            self.processor.apply_input(
                m.topic, m.partition, m.offset, event.key, event.value, decoded
            )
            self.acks.applied(event)
            return
        at = decoded[1] if isinstance(decoded, tuple) else None
        now = _now_ms()
        order = self.order
        if not order.receive(m.topic, m.partition, m.offset, at, (event, decoded), now):
            self._rereceived(m.topic, m.partition, m.offset)
            return  # an offset this worker received before: nothing to do twice
        self._apply(order.release(now, (m.partition,)))
        if order.held > order.max_held or order.paused:
            self._flow()

    def _rereceived(self, topic: str, partition: int, offset: int) -> None:
        """Faust delivers again what it seeks back to: taken before, so not again (the
        first one per partition and assignment is logged)."""
        tp = (topic, partition)
        n = self.rereceived[tp] = self.rereceived.get(tp, 0) + 1
        if n == 1:
            log.warning(
                "%s[%d] offset %d is below the next offset %s: taken for a redelivery, "
                "not queued again (logged once per assignment)",
                topic,
                partition,
                offset,
                self.contiguity.next.get(tp),
            )

    async def tick(self) -> None:
        """Apply what became due with time, end offsets or positions (a timer)."""
        waiting = self.order.waiting_on()
        now_s = _seconds()
        for topic, partition in waiting:
            try:
                pos = await self.app.consumer.position(TP(topic, partition))
            except Exception:  # not known now: the wait runs on the clock
                pos = None
            if pos is None:
                self.positions.pop((topic, partition), None)
            else:
                self.positions[(topic, partition)] = pos
            self._report_if_still(topic, partition, pos, now_s)
        for tp in self._still.keys() - set(waiting):
            del self._still[tp]
        self._apply(self.order.release(_now_ms()))
        self._flow()

    def _report_if_still(self, topic: str, partition: int, pos: int | None, now_s: float) -> None:
        """Log a wait on a partition whose position has not moved for `STALL_REPORT_S`,
        with what the order knows of it, so that an operator sees it."""
        tp = (topic, partition)
        seen = self._still.get(tp)
        if seen is None or seen[1] != pos:
            self._still[tp] = (now_s, pos, now_s)
            return
        since, _, reported = seen
        if now_s - reported < STALL_REPORT_S:
            return
        self._still[tp] = (since, pos, now_s)
        log.warning(
            "the records of partition %d wait on %s[%d] for %.0f s and its position %s has "
            "not moved: end offset %s, fetched up to %s, next offset expected %s, %s",
            partition,
            topic,
            partition,
            now_s - since,
            pos,
            self._end_offset(topic, partition),
            self.fetched.get(tp),
            self.order.next_offset.get(tp),
            "paused by the held-records bound" if tp in self.order.paused else "not paused",
        )

    def _apply(self, released: Iterable[Any]) -> None:
        apply, applied, hold = self.processor.apply_input, self.acks.applied, self.metrics.hold
        for r in released:
            event, decoded = r.item
            m = event.message
            apply(m.topic, m.partition, m.offset, event.key, event.value, decoded)
            applied(event)
            hold.observe(r.held_ms / 1000.0)

    def _flow(self) -> None:
        pause, resume = self.order.flow()
        consumer = self.app.consumer
        if pause:
            tps = {TP(t, p) for t, p in pause}
            consumer.pause_partitions(tps)
            # What the fetch being handed over holds of them still arrives, in order:
            # Faust would drop it (see streams/faust_private.py).
            deliver_fetched(consumer, tps)
        if resume:
            consumer.resume_partitions({TP(t, p) for t, p in resume})

    # ---- rebalances ------------------------------------------------------------------

    async def on_assigned(self, assigned: Iterable[TP]) -> None:
        """Faust pauses new partitions until their tables are recovered, so nothing is
        fetched yet: each position is where this worker's records of it start."""
        tps = [tp for tp in assigned if tp.topic in self.guarded]
        # Asked all at once: one at a time took 18-144 ms for 20 partitions here.
        found = await asyncio.gather(
            *(self.app.consumer.position(tp) for tp in tps), return_exceptions=True
        )
        positions: dict[tuple[str, int], int | None] = {}
        for tp, pos in zip(tps, found, strict=True):
            if isinstance(pos, BaseException) or pos is None:
                log.warning("position of %s unknown (%r): it counts as behind", tp, pos)
                pos = None
            self.contiguity.assign((tp.topic, tp.partition), pos)
            if tp.topic in self.inputs:
                positions[(tp.topic, tp.partition)] = pos
        self.order.assign(positions)

    async def on_rebalanced(self) -> None:
        """Tables are recovered and Faust is about to seek its partitions back to their
        committed offsets, which skips those with none committed: each partition with
        nothing taken yet is sought to its position at assignment (models/contiguity.py)."""
        starts = self.contiguity.untaken()
        done = await asyncio.gather(
            *(self.app.consumer.seek(TP(*tp), offset) for tp, offset in starts.items()),
            return_exceptions=True,
        )
        for tp, result in zip(starts, done, strict=True):
            if isinstance(result, BaseException):
                log.warning("seeking %s[%d] to its start failed: %r", *tp, result)

    def on_revoked(self, revoked: Iterable[TP]) -> int:
        """Drop the held records of revoked partitions, unacknowledged."""
        partitions = {tp.partition for tp in revoked if tp.topic in self.inputs}
        for tp in revoked:
            self.fetched.pop((tp.topic, tp.partition), None)
            self.positions.pop((tp.topic, tp.partition), None)
            self._still.pop((tp.topic, tp.partition), None)
            self.rereceived.pop((tp.topic, tp.partition), None)
            self.contiguity.revoke((tp.topic, tp.partition))
        return len(self.order.revoke(partitions))


class _Fetched(faust.Sensor):
    """Faust calls `on_message_in` for every record it fetched, before the agent."""

    def __init__(self, fetched: dict[tuple[str, int], int], topics: frozenset[str]) -> None:
        super().__init__()
        self._fetched = fetched
        self._topics = topics

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        if tp.topic in self._topics:
            self._fetched[(tp.topic, tp.partition)] = offset + 1
