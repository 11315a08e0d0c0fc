"""Records gathered between commits and sent as whole Kafka record batches.

The service writes a changed customer's state (the table's changelog record) and its
snapshot once per commit (streams/processor.py). Through Faust's `send_soon` every one
of those records costs a FutureMessage, a hand-off through Faust's producer buffer, an
aiokafka `send` and a delivery callback; with one-record batches on tansu also a
request of its own. That was most of a record's cost after the model. Here a record
costs a list append; at the commit each partition's records go out as a few record
batches built in one pass (aiokafka's `BatchBuilder` + `send_batch`).

Delivery and commits. `ship()` is synchronous: it starts sending everything appended
so far; `delivered()` awaits every shipment started so far. The service's commit step
(streams/acks.py) ships, awaits delivery and only then acknowledges the input, so no
offset is committed before the states and snapshots of the input it covers are on the
broker. Shipments go out in order: each waits for the one before, so a key's records
never overtake each other.

tansu. Its ListOffsets "latest" is the base offset of a partition's last batch + 1,
and Faust's table recovery trusts it (streams/app.py). With `last_record_alone` a
shipment ends every partition with a batch of one record, so the answer is exact
whenever a shipment completed. A crash in the middle of one can leave a longer batch
last: recovery then stops at its first record and misses the rest, but the offsets of
the input those records came from were not committed (the commit waits for the whole
shipment), so that input is redelivered and written again (a redelivered duplicate
marks its customer's state changed; see `Processor`). Real Kafka needs none of this
and gets the same batches minus the split.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

# topic, partition, offset of the last record delivered there
Delivered = Callable[[str, int, int], None]
Headers = list[tuple[str, bytes]]
# key, value (None: a tombstone), headers (None: none)
Queued = tuple[bytes, bytes | None, Headers | None]

# Kafka's default message.max.bytes is ~1 MiB per batch; tansu takes the bench
# producer's 256 KiB. A commit's states (~4 KB each) fill a few per partition.
BATCH_BYTES = 256 * 1024


class RecordBatches:
    def __init__(
        self,
        producer: Callable[[], Any],
        *,
        last_record_alone: bool = False,
        on_delivered: Delivered | None = None,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        # Asked for at each shipment: Faust creates its aiokafka producer when it starts.
        self._producer = producer
        self.last_record_alone = last_record_alone
        self.on_delivered = on_delivered
        self.batch_bytes = batch_bytes
        self._open: dict[tuple[str, int], list[Queued]] = {}
        self._shipping: asyncio.Future[None] | None = None  # the latest shipment

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes,
        value: bytes | None,
        headers: Headers | None = None,
    ) -> None:
        """Queue a record (value None: a tombstone) for the next shipment."""
        records = self._open.get((topic, partition))
        if records is None:
            records = self._open[(topic, partition)] = []
        records.append((key, value, headers))

    def pending(self) -> list[tuple[str, int, bytes, bytes | None]]:
        """What the next shipment would send, in order (for tests and diagnostics)."""
        return [(t, p, k, v) for (t, p), recs in self._open.items() for k, v, _ in recs]

    def pending_headers(self) -> list[Headers | None]:
        """The headers of `pending()`'s records, in the same order."""
        return [h for recs in self._open.values() for _, _, h in recs]

    def ship(self) -> None:
        """Start sending everything appended so far (needs a running event loop)."""
        if not self._open:
            return
        records, self._open = self._open, {}
        self._shipping = asyncio.ensure_future(self._ship(records, self._shipping))

    async def delivered(self) -> None:
        """Wait until every shipment started so far is on the broker; a failed one
        raises here, at every later call too: its records may be lost, so no later
        commit may go out."""
        while (shipping := self._shipping) is not None:
            await shipping
            if shipping is self._shipping:
                return

    async def _ship(
        self,
        records: dict[tuple[str, int], list[Queued]],
        previous: asyncio.Future[None] | None,
    ) -> None:
        if previous is not None:
            await previous
        producer = self._producer()
        await asyncio.gather(
            *(self._ship_partition(producer, t, p, recs) for (t, p), recs in records.items())
        )

    async def _ship_partition(
        self, producer: Any, topic: str, partition: int, records: list[Queued]
    ) -> None:
        deliveries, last_count = [], 0
        for batch in self._batches(records):
            last_count = batch.record_count()
            # send_batch waits while an earlier batch of this partition is still queued:
            # batches of one partition leave one after the other, in order.
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        metadata = await asyncio.gather(*deliveries)
        if self.on_delivered is not None:
            # A batch's metadata carries its base offset.
            self.on_delivered(topic, partition, metadata[-1].offset + last_count - 1)

    def _batches(self, records: list[Queued]) -> Iterator[BatchBuilder]:
        alone = records[-1:] if self.last_record_alone and len(records) > 1 else []
        body = records[: len(records) - len(alone)]
        for part in (body, alone):
            batch = BatchBuilder(self.batch_bytes, 0)
            for key, value, headers in part:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    yield batch  # full; a new batch always takes its first record
                    batch = BatchBuilder(self.batch_bytes, 0)
                    batch.append(timestamp=None, key=key, value=value, headers=headers)
            if batch.record_count():
                yield batch
