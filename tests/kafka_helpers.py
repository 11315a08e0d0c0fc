"""Small Kafka helpers for tests against a real broker (tansu, testcontainers or external).

Every helper has a sync form (``create_topics``, ``produce``, ``read_topic``) for plain
tests and an async form (``aproduce``, ``aread_topic``) for ``async def`` tests, where
``asyncio.run`` is not allowed. Every wait is bounded.

On tansu, ``end_offsets()``/``seek_to_end()`` are unreliable (ListOffsets "latest" can
point inside the last batch), so ``read_topic`` always reads from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

Headers = Sequence[tuple[str, bytes]]
# (topic, key, value, headers)
OutRecord = tuple[str, bytes | None, bytes, Headers | None]


@dataclass(frozen=True)
class Record:
    """A record as read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int | None = None


@dataclass(frozen=True)
class Sent:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 4,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create each topic (replication factor 1); an existing topic is left as it is."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-tests")
    try:
        for name in names:
            topic = NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
    finally:
        admin.close()


async def aproduce(bootstrap: str, records: Iterable[OutRecord], pace_s: float = 0.0) -> list[Sent]:
    """Send the records in order and wait for every acknowledgement.

    With ``pace_s > 0`` each send is acknowledged before the next, ``pace_s`` apart
    (records then arrive one per batch, like a live upstream). Without, they are batched.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        sent: list[Sent] = []
        for topic, key, value, headers in records:
            fut = await producer.send(topic, value=value, key=key, headers=list(headers or []))
            if pace_s > 0:
                md = await fut
                sent.append(Sent(md.topic, md.partition, md.offset))
                await asyncio.sleep(pace_s)
            else:
                futures.append(fut)
        for md in await asyncio.gather(*futures):
            sent.append(Sent(md.topic, md.partition, md.offset))
        return sent
    finally:
        await producer.stop()


def produce(bootstrap: str, records: Iterable[OutRecord], pace_s: float = 0.0) -> list[Sent]:
    """Sync form of :func:`aproduce`."""
    return asyncio.run(aproduce(bootstrap, records, pace_s))


async def aread_topic(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    idle_s: float = 2.0,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of ``topic`` from the beginning of each partition, without a group.

    With ``expected``, returns as soon as that many records are in (plus any already
    fetched with them); otherwise once nothing new arrived for ``idle_s``. Either way it
    returns what it has after ``timeout_s`` (so the caller's assertion shows the shortfall).
    A topic that does not exist yet is waited for within the same time limit.
    Records come sorted by (partition, offset).
    """
    deadline = time.monotonic() + timeout_s
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions: set[int] = set()
        while True:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(topic) or set()
            if partitions or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last_new = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if expected is None and now - last_new >= idle_s:
                break
            if expected is not None and len(records) >= expected:
                break
            wait_ms = int(max(1, min(200, (deadline - now) * 1000)))
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=10_000)
            for recs in batch.values():
                for r in recs:
                    records.append(
                        Record(
                            topic=r.topic,
                            partition=r.partition,
                            offset=r.offset,
                            key=r.key,
                            value=r.value,
                            headers=[(k, bytes(v)) for k, v in (r.headers or ())],
                            timestamp=r.timestamp,
                        )
                    )
                    last_new = time.monotonic()
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    idle_s: float = 2.0,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Sync form of :func:`aread_topic`."""
    return asyncio.run(
        aread_topic(bootstrap, topic, expected=expected, idle_s=idle_s, timeout_s=timeout_s)
    )


def segment_batches(log_dir: Path, topic: str) -> dict[int, list[int]]:
    """Records per record batch, in offset order, per partition of ``topic``, read from
    the segment files of a broker whose log dir we have (Apache Kafka's on-disk format:
    each batch starts with baseOffset int64, batchLength int32, and its lastOffsetDelta
    int32 is at byte 23)."""
    out: dict[int, list[int]] = {}
    for part_dir in sorted(log_dir.glob(f"{topic}-*")):
        partition = part_dir.name.rsplit("-", 1)[1]
        if not partition.isdigit():
            continue
        sizes: list[int] = []
        for segment in sorted(part_dir.glob("*.log")):
            data = segment.read_bytes()
            pos = 0
            while pos + 27 <= len(data):
                (length,) = struct.unpack_from(">i", data, pos + 8)
                (last_delta,) = struct.unpack_from(">i", data, pos + 23)
                sizes.append(last_delta + 1)
                pos += 12 + length
        out[int(partition)] = sizes
    return out


def end_offsets(
    bootstrap: str, topics: Sequence[str], partitions: int
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> end offset, of every partition of ``topics``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [KafkaTopicPartition(t, p) for t in topics for p in range(partitions)]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the group's committed offset (partitions it committed)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-tests")
    try:
        got = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in got.items() if meta.offset >= 0}


def committed_total(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """The group's committed offsets summed over the partitions of ``topics``."""
    wanted = set(topics)
    return sum(v for tp, v in committed_offsets(bootstrap, group).items() if tp[0] in wanted)


def wait_until_consumed(
    bootstrap: str, group: str, topics: Sequence[str], partitions: int, timeout_s: float
) -> dict[tuple[str, int], int]:
    """Until the group's committed offset is the end offset of every non-empty partition
    of ``topics``; returns the end offsets."""
    deadline = time.monotonic() + timeout_s
    behind: dict[tuple[str, int], tuple[int | None, int]] = {}
    while time.monotonic() < deadline:
        try:
            ends = end_offsets(bootstrap, topics, partitions)
            committed = committed_offsets(bootstrap, group)
        except KafkaError as exc:  # e.g. the coordinator still loading after a restart
            if not exc.retriable:
                raise
            time.sleep(0.5)
            continue
        behind = {
            tp: (committed.get(tp), end)
            for tp, end in ends.items()
            if end > 0 and committed.get(tp, -1) < end
        }
        if not behind:
            return ends
        time.sleep(0.5)
    raise AssertionError(f"the group {group} has not consumed everything: {behind}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def accepts_connections(bootstrap: str) -> bool:
    """Whether anything listens at ``host:port``."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    return True
