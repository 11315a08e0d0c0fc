"""The Faust wiring: topics, the customer table, thin agents and the timers.

Agents only move records between Faust and the `Processor` (decode -> engine ->
table -> send); the order of application is streams/ordering.py, the acks that make
every commit safe streams/acks.py, everything else the processor decides.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from models.partitioner import partition_for
from models.settings import Settings
from models.timeutil import now_us
from streams import web
from streams.acks import AckAfterDelivery
from streams.app import create_app
from streams.faust_private import aiokafka_producer, own_acks
from streams.metrics import Metrics
from streams.ordering import OrderedInput
from streams.processor import Headers, Processor
from streams.record_batches import RecordBatches
from streams.table_writes import PartitionedTable

log = logging.getLogger(__name__)

TABLE_NAME = "customers"
# How often the order of application looks at holds that end with time or with the
# end offsets; records that arrive are applied at once, without waiting for it.
ORDER_TICK_SECONDS = 0.05


class Service:
    """One worker's app, built from settings (nothing happens until the app runs)."""

    def __init__(self, settings: Settings, **app_overrides: Any) -> None:
        self.settings = settings
        self.app = app = create_app(settings, **app_overrides)
        t, n = settings.topics, settings.partitions
        # Raw bytes in and out: the processor decodes (and dead-letters) input itself,
        # so a malformed value can never crash an agent inside Faust's deserialiser.
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
            "partitions": n,
        }
        self.input_topic = app.topic(*t.input_kinds(), **raw)
        self.internal_topic = app.topic(t.internal, **raw)
        self.out: dict[str, faust.types.TopicT] = {
            name: app.topic(name, **raw) for name in (t.alerts, t.snapshots, t.dlq)
        }
        self.out[t.internal] = self.internal_topic
        # Raw bytes both ways: the changelog key must be the same bytes the input
        # topics are partitioned by, or table routing asks the wrong worker.
        self.table = app.Table(
            TABLE_NAME,
            key_type=bytes,
            value_type=bytes,
            partitions=n,
            options=rocksdb_options(settings) if settings.store.startswith("rocksdb") else None,
        )
        self.metrics = Metrics()
        # Changed states (the changelog) and snapshots leave at commits, in whole record
        # batches; see streams/record_batches.py.
        self.batches = RecordBatches(
            self._kafka_producer,
            last_record_alone=settings.broker_kind == "tansu",
        )
        writes = PartitionedTable(self.table, t.internal, n, self.batches)
        self.batches.on_delivered = writes.on_delivered
        self.processor = Processor(
            settings, writes, self._send, coalesce=True, metrics=self.metrics
        )
        self.metrics.watch(self.processor.tallies)
        self.metrics.watch_lag(app, (*t.input_kinds(), t.internal))  # records behind
        # Records are acked only once their outputs are delivered, so whatever Faust
        # commits is safe (streams/acks.py); a commit here is that flush and those acks.
        self.acks = AckAfterDelivery(
            self._flush,
            self.batches.delivered,
            every=settings.commit_every_records,
            acknowledging=lambda: own_acks(app),
        )
        self.ordered = OrderedInput(app, settings, self.processor, self.acks, self.metrics)
        app.before_stop = self.acks.commit

        # Manual acks (noack): an input record is acked once applied and delivered,
        # never while held for its turn. The agents yield nothing: Faust would hand a
        # yielding agent's every value to its sinks (`Agent._slurp`) for nothing here.
        async def ingest(stream: Any) -> None:  # a faust.Stream: StreamT lacks noack()
            on_event, acks = self.ordered.on_event, self.acks
            async for event in stream.noack().events():
                on_event(event)
                if acks.due:
                    await acks.commit()

        async def internal(stream: Any) -> None:
            on_internal, acks, admit = self.processor.on_internal, self.acks, self.ordered.admit
            async for event in stream.noack().events():
                if not admit(event):  # not the next one of its partition
                    continue
                m = event.message
                on_internal(m.partition, m.offset, event.key, event.value)
                acks.applied(event)
                if acks.due:
                    await acks.commit()

        self.ingest = app.agent(self.input_topic, name="ingest")(ingest)
        self.internal = app.agent(self.internal_topic, name="internal")(internal)

        web.register(app, self)

        if settings.sweep_interval_seconds > 0:
            app.timer(settings.sweep_interval_seconds, name="sweep")(self._sweep_tick)
        app.timer(settings.commit_interval_seconds, name="commit")(self._commit)
        # Holds that end with time (max_lag_wait_ms, max_idle_ms) or with end offsets.
        app.timer(ORDER_TICK_SECONDS, name="order")(self._order_tick)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        # Sent once the tables of newly assigned partitions are recovered.
        app.on_rebalance_complete.connect(self._on_rebalanced)  # type: ignore[arg-type]

    def _kafka_producer(self) -> Any:
        return aiokafka_producer(self.app)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None,
        partition: int | None,
    ) -> None:
        if topic == self.settings.topics.snapshots and key is not None:
            # Snapshots are sent at flushes only: with the states, in batches.
            part = partition_for(key, self.settings.partitions)
            self.batches.append(topic, part, key, value, headers)
            return
        # send_soon: no await inside the processor, so a record's read-modify-write
        # of its customer's state is never interleaved with another agent's. Its
        # future resolves on delivery; the records it came from are acked after.
        fut = self.out[topic].send_soon(key=key, value=value, headers=headers, partition=partition)
        self.acks.sent(fut)

    def _flush(self) -> None:
        self.processor.flush()
        self.batches.ship()

    async def _commit(self) -> None:
        await self.acks.commit()

    async def _order_tick(self) -> None:
        await self.ordered.tick()

    async def _sweep_tick(self) -> None:
        """Ask each of this worker's internal partitions to sweep itself: the sweep
        then runs inside that partition's stream, where table writes belong."""
        request = self.processor.sweep_request(now_us())
        internal = self.settings.topics.internal
        for tp in sorted(self.app.assignor.assigned_actives()):
            if tp.topic == internal:
                await self.internal_topic.send(value=request, partition=tp.partition)

    async def _on_revoked(self, sender: Any, revoked: Any, *args: Any, **kwargs: Any) -> None:
        # Held records of the revoked partitions are dropped and their applied ones
        # not acked: the next owner reads them again. The states written here must
        # reach the changelog before that owner restores it.
        self.ordered.on_revoked(revoked)
        self.acks.forget((tp.topic, tp.partition) for tp in revoked)
        await self.acks.commit()
        self.processor.forget()

    async def _on_assigned(self, sender: Any, assigned: Any, *args: Any, **kwargs: Any) -> None:
        await self.ordered.on_assigned(assigned)

    async def _on_rebalanced(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.processor.reindex()
        await self.ordered.on_rebalanced()


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """The table's RocksDB store options (Faust's `RocksDBOptions`), from the settings."""
    mib = 1024 * 1024
    return {
        "block_cache_size": settings.rocksdb_block_cache_mib * mib,
        "write_buffer_size": settings.rocksdb_write_buffer_mib * mib,
        "max_write_buffer_number": settings.rocksdb_write_buffers,
    }


def worker_argv(extra: list[str], *, loglevel: str = "info") -> list[str]:
    """Faust's own `worker` command line, with every Faust option still reachable."""
    argv = ["worker"]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in extra):
        argv += ["-l", loglevel]
    return argv + extra
