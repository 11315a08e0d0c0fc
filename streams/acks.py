"""An input record is acknowledged only once everything it caused is on the broker.

The agents read with manual acks (`stream.noack()`), and Faust commits, per
topic-partition, the highest acknowledged offset + 1 (streams/faust_private.py). So if
a record is acked only after its state (changelog), its snapshot and the alerts, dead
letters and internal records it caused are delivered, and after every record of its
partition before it, every committed offset is safe by construction, whenever Faust
commits and whatever crashes when. Records held for their turn (streams/ordering.py)
are never acked at all, and the consumer takes no ack from anywhere but here.

Offsets are acked in the order their records were applied, which per topic-partition
is offset order with none left out: the order of application never reorders a queue,
and a record after a gap is not taken (models/contiguity.py).

A record at or below the partition's last acked offset would be one delivered again
in the same assignment; those are not taken either, so this is counted
(`redelivered`) and acked without moving anything, should it happen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

log = logging.getLogger(__name__)


class AckAfterDelivery:
    """Applied records and the sends they caused, acknowledged at each `commit()`."""

    def __init__(
        self,
        flush: Callable[[], None],
        delivered: Callable[[], Awaitable[None]],
        *,
        every: int,
        acknowledging: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self._flush = flush  # writes changed states and owed snapshots, starts sending
        self._delivered = delivered  # awaits what `flush` started
        self.every = every
        # The block the consumer takes acks in: no other ack counts (faust_private).
        self._acknowledging = acknowledging
        self.events: list[Any] = []  # applied since the last commit, in order
        self.sends: list[asyncio.Future[Any]] = []  # Faust sends since then
        self._acked: dict[tuple[str, int], int] = {}  # highest offset acked per tp
        self.redelivered = 0  # records acked again: delivered twice in one assignment
        self._lock = asyncio.Lock()
        # Revoked while a commit waited for deliveries: its acks of them are dropped,
        # or they would reach Faust's bookkeeping of a later assignment.
        self._revoked_meanwhile: set[tuple[str, int]] = set()

    def applied(self, event: Any) -> None:
        self.events.append(event)

    def sent(self, fut: asyncio.Future[Any]) -> None:
        self.sends.append(fut)

    @property
    def due(self) -> bool:
        return len(self.events) >= self.every

    async def commit(self) -> int:
        """Acknowledge every record applied so far, once its outputs are delivered;
        how many were acknowledged."""
        async with self._lock:
            # 1. What was applied up to now: its outputs are all handed over below.
            events, sends = self.events, self.sends
            self.events, self.sends = [], []
            self._revoked_meanwhile = set()
            # 2. The changed states (store now, changelog batched) and owed snapshots.
            self._flush()
            # 3. Wait until all of it, and every send before it, is on the broker. A
            #    failed send raises: its records stay unacked and are redelivered.
            await self._delivered()
            if sends:
                await asyncio.gather(*sends)
            # 4. Acknowledge, in the order applied, what is still assigned; Faust
            #    commits acked offsets.
            gone = self._revoked_meanwhile
            if gone:
                events = [e for e in events if (e.message.topic, e.message.partition) not in gone]
            with self._acknowledging():
                for event in events:
                    self._ack(event)
            return len(events)

    def _ack(self, event: Any) -> None:
        m = event.message
        tp = (m.topic, m.partition)
        last = self._acked.get(tp)
        if last is not None and m.offset <= last:
            self.redelivered += 1
            log.debug("%s@%d delivered again after @%d was acked", tp, m.offset, last)
        else:
            self._acked[tp] = m.offset
        event.ack()

    def forget(self, partitions: Iterable[tuple[str, int]]) -> int:
        """These topic-partitions were revoked: their applied records are never acked
        here (the next owner reads them again; their outputs are idempotent)."""
        gone = set(partitions)
        self._revoked_meanwhile |= gone
        for tp in gone:
            self._acked.pop(tp, None)
        before = len(self.events)
        self.events = [e for e in self.events if (e.message.topic, e.message.partition) not in gone]
        return before - len(self.events)
