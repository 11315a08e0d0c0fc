"""The Faust wiring: topics, the customer table, thin agents and the sweep timer.

Agents only move records between Faust and the `Processor` (decode -> engine ->
table -> send); everything they decide is in streams/processor.py.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from models.partitioner import partition_for
from models.settings import Settings
from models.timeutil import now_us
from streams import web
from streams.app import also_before_commit, create_app
from streams.metrics import Metrics
from streams.processor import Headers, Processor
from streams.record_batches import RecordBatches
from streams.table_writes import PartitionedTable

log = logging.getLogger(__name__)

TABLE_NAME = "customers"


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
        self.table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=n)
        self.metrics = Metrics()
        # Changed states (the changelog) and snapshots leave at commits, in whole record
        # batches; see streams/record_batches.py.
        self.batches = RecordBatches(
            self._kafka_producer,
            last_record_alone=settings.broker_kind == "tansu",
        )
        writes = PartitionedTable(self.table, t.internal, n, self.batches)
        self.batches.on_delivered = writes.on_delivered
        also_before_commit(app, self.batches.delivered)
        self.processor = Processor(
            settings, writes, self._send, coalesce=True, metrics=self.metrics
        )
        self.metrics.watch(self.processor.tallies)
        # Faust calls sensors' on_commit_initiated before it flushes the producer and
        # commits offsets: the changed states and owed snapshots go out first (see
        # Processor).
        app.sensors.add(_FlushBeforeCommit(self.processor, self.batches))

        # The agents yield nothing: Faust then hands a yielding agent's every value to
        # its sinks (`Agent._slurp`), a few µs per record for nothing here.
        async def ingest(stream: faust.StreamT[bytes]) -> None:
            on_input = self.processor.on_input
            async for event in stream.events():
                m = event.message
                on_input(m.topic, m.partition, m.offset, event.key, event.value)

        async def internal(stream: faust.StreamT[bytes]) -> None:
            on_internal = self.processor.on_internal
            async for event in stream.events():
                m = event.message
                on_internal(m.partition, m.offset, event.key, event.value)

        self.ingest = app.agent(self.input_topic, name="ingest")(ingest)
        self.internal = app.agent(self.internal_topic, name="internal")(internal)

        web.register(app, self)

        if settings.sweep_interval_seconds > 0:
            app.timer(settings.sweep_interval_seconds, name="sweep")(self._sweep_tick)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        # Sent once the tables of newly assigned partitions are recovered.
        app.on_rebalance_complete.connect(self._on_rebalanced)  # type: ignore[arg-type]

    def _kafka_producer(self) -> Any:
        """Faust's aiokafka producer (private to Faust; it exists once Faust started)."""
        return self.app.producer._producer  # type: ignore[attr-defined]

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
            self.batches.append(topic, partition_for(key, self.settings.partitions), key, value)
            return
        # send_soon: no await inside the processor, so a record's read-modify-write
        # of its customer's state is never interleaved with another agent's.
        self.out[topic].send_soon(key=key, value=value, headers=headers, partition=partition)

    async def _sweep_tick(self) -> None:
        """Ask each of this worker's internal partitions to sweep itself: the sweep
        then runs inside that partition's stream, where table writes belong."""
        request = self.processor.sweep_request(now_us())
        internal = self.settings.topics.internal
        for tp in sorted(self.app.assignor.assigned_actives()):
            if tp.topic == internal:
                await self.internal_topic.send(value=request, partition=tp.partition)

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        # Faust has flushed its producer already; the states written here must reach
        # the changelog before the partitions' new owner reads it.
        self.processor.forget()
        self.batches.ship()
        await self.app.producer.flush()  # awaits the shipment too (also_before_commit)

    async def _on_rebalanced(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.processor.reindex()


class _FlushBeforeCommit(faust.Sensor):
    def __init__(self, processor: Processor, batches: RecordBatches) -> None:
        super().__init__()
        self.processor = processor
        self.batches = batches

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.processor.flush()
        self.batches.ship()  # Faust's pre-commit producer flush awaits the delivery
        return super().on_commit_initiated(consumer)


def worker_argv(extra: list[str], *, loglevel: str = "info") -> list[str]:
    """Faust's own `worker` command line, with every Faust option still reachable."""
    argv = ["worker"]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in extra):
        argv += ["-l", loglevel]
    return argv + extra
