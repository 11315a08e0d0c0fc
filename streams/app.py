"""The Faust app, built from `Settings`. Broker-specific client settings live here,
in one place, with the reason for each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from models.settings import Settings


def broker_url(settings: Settings) -> str:
    hosts = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def app_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker": broker_url(settings),
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "processing_guarantee": settings.processing_guarantee,
        "broker_commit_interval": settings.commit_interval_seconds,
        "broker_commit_every": settings.commit_every_records,
        # A new group reads input from the start: nothing upstream published is skipped.
        "consumer_auto_offset_reset": "earliest",
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        "web_host": settings.web_bind,
    }
    if settings.broker_kind == "tansu":
        conf.update(
            # tansu holds a JoinGroup for half the session timeout: Faust's default
            # (60 s) would cost 30 s per start and per rebalance. Real Kafka refuses
            # sessions below group.min.session.timeout.ms (6 s), so only here.
            broker_session_timeout=4.0,
            broker_heartbeat_interval=1.0,
            # tansu answers ListOffsets "latest" with the base offset of the last batch
            # + 1; Faust trusts it to end table recovery, so batched changelogs restore
            # too little or crash (ConsistencyError). One record per batch keeps the
            # answer right (~11 % slower). Real Kafka is not affected.
            producer_max_batch_size=1,
        )
    return conf


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    conf = app_config(settings) | overrides
    app = faust.App(settings.app_id, **conf)
    flush_everything_before_commit(app)
    return app


def also_before_commit(app: faust.App, wait: Callable[[], Awaitable[None]]) -> None:
    """Make the producer flush that Faust awaits before committing offsets also await
    `wait()`: records sent outside Faust's producer buffer (streams/record_batches.py)
    must be delivered before the offsets of the input they came from are committed."""
    buffer: Any = app.producer.buffer
    drain = buffer.flush

    async def drain_then_wait() -> None:
        await drain()
        await wait()

    buffer.flush = drain_then_wait


def flush_everything_before_commit(app: faust.App) -> None:
    """Make the producer flush that Faust awaits before committing offsets complete.

    Table changelog writes and every `send_soon` go through Faust's producer buffer.
    Before a commit Faust awaits `producer.flush()`, whose buffer drain gives up after
    0.1 s without a message handed on (`ProducerBuffer.flush_atmost`). A hand-off
    waits whenever aiokafka's batch for that partition is full - with one-record
    batches (tansu, above) that is a broker round trip - so the commit could go out
    while changelog records, credits or snapshots of committed input were still in
    the buffer, and a crash then lost them: a referral credit vanished across a
    kill -9 in the crash test. Here the drain waits until every message put before
    it was handed to the Kafka client, whose own flush then waits for delivery.
    """
    if app.conf.producer_threaded:  # a different buffer path; not used by this service
        return
    buffer: Any = app.producer.buffer  # the concrete ProducerBuffer, private parts used
    put, send_pending = buffer.put, buffer._send_pending
    counts = {"put": 0, "handed": 0}
    handed = asyncio.Event()

    def counted_put(fut: Any) -> None:
        counts["put"] += 1
        put(fut)

    async def counted_send(fut: Any) -> None:
        try:
            await send_pending(fut)
        finally:
            counts["handed"] += 1
            handed.set()

    async def drain() -> None:
        # Only up to what was put so far: under steady load the buffer is never empty.
        target = counts["put"]
        while counts["handed"] < target and not buffer.should_stop:
            handed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                # Wakes up to notice a stopping buffer, whose sender task is gone.
                await asyncio.wait_for(handed.wait(), timeout=1.0)

    # Instance attributes: the buffer looks these up on itself, and its sender task
    # binds `_send_pending` when the producer starts, after this runs.
    buffer.put = counted_put
    buffer._send_pending = counted_send
    buffer.flush = drain
