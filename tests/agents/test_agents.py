"""The Faust agents themselves, with `agent.test_context()` and the memory store
(faust's testing guide): records go in through the agent, the table and the sends
are checked. No broker: the processor's send is replaced by a list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from faust.types import EventT
from faust.types.enums import ProcessingGuarantee
from yarl import URL

from models import codec
from models.errors import ConfigError
from models.partitioner import partition_for
from models.settings import Settings
from streams.agents import Service
from streams.app import create_app
from tests.builders import order

Sent = list[tuple[str, bytes | None, bytes, Any, int | None]]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, Sent]]:
    settings = Settings(
        store="memory://",
        data_dir=tmp_path,
        kafka_bootstrap_servers="127.0.0.1:9",  # never contacted
        sweep_interval_seconds=0,
    )
    svc = Service(settings)
    svc.app.finalize()
    svc.app.conf.store = URL("memory://")
    sent: Sent = []
    svc.processor.send = lambda t, k, v, h, p: sent.append((t, k, v, h, p))
    yield svc, sent


def envelope(topic: str, value: dict[str, Any]) -> bytes:
    return json.dumps({"k": "event", "topic": topic, "value": json.dumps(value)}).encode()


async def test_internal_agent_applies_a_rekeyed_event_to_the_table(service: Any) -> None:
    svc, sent = service
    topic, value = order("c1", "2026-01-05", 100, 40)
    part = partition_for(b"c1", svc.settings.partitions)
    async with svc.internal.test_context() as agent:
        await agent.put(envelope(topic, value), key=b"c1", partition=part)
    # State and snapshot wait for Faust's next commit; the dashboard and API read the
    # processor's cache meanwhile.
    assert b"c1" not in svc.table and sent == []
    assert svc.processor.stored_state(b"c1").events_applied == 1
    # The flush runs outside any record (at a commit): the write stands in for one of
    # the customer's partition, which Faust's table needs for RocksDB and the changelog.
    assert svc.processor.flush() == (1, 1)
    state = codec.loads(svc.table[b"c1"])
    assert state.events_applied == 1 and state.lifetime[0] == 100
    assert [t for t, *_ in sent] == ["profitability-snapshots"]
    # ... and its changelog record, waiting for the commit's shipment, is the table's
    # key and value on the customer's partition (3 for c1), not on a default one
    [(topic, partition, key, value)] = svc.batches.pending()
    assert topic == svc.table.changelog_topic.get_topic_name()
    assert topic.endswith("-customers-changelog")
    assert (partition, key, value) == (part, b"c1", svc.table[b"c1"]) and part != 0
    assert svc.app.producer.buffer.pending.qsize() == 0  # not through Faust's sends
    # Snapshots join the same shipment, on the customer's partition of their topic.
    svc._send("profitability-snapshots", b"c1", b"{}", None, None)
    assert svc.batches.pending()[-1] == ("profitability-snapshots", part, b"c1", b"{}")


async def test_internal_agent_links_and_credits(service: Any) -> None:
    svc, sent = service
    link = {"k": "link", "referred": "b", "referrer": "a", "at": 1_767_000_000_000_000, "id": "r1"}
    async with svc.internal.test_context() as agent:
        await agent.put(
            json.dumps(link).encode(),
            key=b"b",
            partition=partition_for(b"b", svc.settings.partitions),
        )
        topic, value = order("b", "2026-01-05", 100, 0, event_id="o1")
        await agent.put(
            envelope(topic, value), key=b"b", partition=partition_for(b"b", svc.settings.partitions)
        )
    svc.processor.flush()
    assert codec.loads(svc.table[b"b"]).referred_by == "a"
    credits = [json.loads(v) for t, k, v, _, _ in sent if t == "profitwatch-internal"]
    assert credits == [
        {
            "k": "credit",
            "id": "o1:referral",
            "referrer": "a",
            "amount": "10",
            "at": credits[0]["at"],
            # Where the order it comes from was consumed: the second internal record.
            "src": [f"internal/{partition_for(b'b', svc.settings.partitions)}", 1],
        }
    ]


async def test_ingest_agent_dead_letters_what_it_cannot_use(service: Any) -> None:
    """test_context() delivers on a test channel, not on one of the five input topics:
    the agent must treat that like any record of an unknown topic, not crash."""
    svc, sent = service
    async with svc.ingest.test_context() as agent:
        await agent.put(b"{not json", key=b"x")
        await agent.put(json.dumps(order("c1", "2026-01-05", 1, 1)[1]).encode(), key=b"c1")
    codes = [json.loads(v)["error"]["code"] for t, _, v, _, _ in sent if t == "profitability-dlq"]
    assert codes == ["malformed_json", "schema_violation"]
    assert b"c1" not in svc.table


def test_app_config_carries_commits_and_the_broker_quirks(tmp_path: Path) -> None:
    from streams.app import app_config

    s = Settings(
        broker_kind="tansu",
        commit_interval_seconds=7,
        commit_every_records=50,
        data_dir=tmp_path,
    )
    conf = app_config(s)
    assert conf["broker_commit_interval"] == 7 and conf["broker_commit_every"] == 50
    assert conf["broker_session_timeout"] == 4.0 and conf["producer_max_batch_size"] == 1
    assert "producer_max_batch_size" not in app_config(Settings(broker_kind="kafka"))


def test_the_tables_rocksdb_memory_is_bounded_by_the_settings(tmp_path: Path) -> None:
    # Faust's defaults (2 GiB block cache, 3 x 64 MiB memtables per partition's store)
    # let RSS grow for hours; the options reach the store that opens the databases.
    settings = Settings(
        store="rocksdb://",
        data_dir=tmp_path,
        kafka_bootstrap_servers="127.0.0.1:9",  # never contacted
        rocksdb_block_cache_mib=8,
        rocksdb_write_buffer_mib=4,
        rocksdb_write_buffers=3,
    )
    svc = Service(settings)
    svc.app.finalize()
    opts = svc.table.data.rocksdb_options  # type: ignore[attr-defined]
    mib = 1024 * 1024
    assert (opts.block_cache_size, opts.write_buffer_size, opts.max_write_buffer_number) == (
        8 * mib,
        4 * mib,
        3,
    )
    defaults = Settings()
    assert defaults.rocksdb_block_cache_mib * 1024**2 < opts.__class__.block_cache_size


def test_table_writes_stand_in_for_a_record_of_the_customers_partition() -> None:
    """What Faust's table reads at a write is a record of the key's partition, inside
    another partition's record too; the record being processed is restored after."""
    import weakref

    import faust
    from faust.streams import _current_event

    from streams.record_batches import RecordBatches
    from streams.table_writes import PartitionedTable

    seen: list[tuple[bytes, int, str]] = []

    class Probe(dict[bytes, bytes]):
        """Faust's table: its store (`data`, which reads the current event) is itself."""

        class changelog_topic:  # Faust's attribute name
            @staticmethod
            def get_topic_name() -> str:
                return "pw-customers-changelog"

        @property
        def data(self) -> Probe:
            return self

        def __setitem__(self, key: bytes, value: bytes) -> None:
            event: Any = faust.current_event()
            seen.append((key, event.message.partition, event.message.topic))
            super().__setitem__(key, value)

    batches = RecordBatches(lambda: None)
    table = PartitionedTable(Probe(), "profitwatch-internal", 4, batches)
    table[b"c1"] = b"x"  # outside any record, as at a commit
    # The table's stand-in for a record: Faust's context holds a weak reference to it.
    outer = cast("EventT[Any]", table._records[0])
    token = _current_event.set(weakref.ref(outer))
    try:
        table[b"c2"] = b"y"  # inside a record of partition 0, as when the cache evicts
        assert faust.current_event() is outer
    finally:
        _current_event.reset(token)
    assert faust.current_event() is None
    assert seen == [
        (b"c1", partition_for(b"c1", 4), "profitwatch-internal"),
        (b"c2", partition_for(b"c2", 4), "profitwatch-internal"),
    ]
    assert partition_for(b"c2", 4) != 0 and dict(table) == {b"c1": b"x", b"c2": b"y"}
    # and the changelog records wait for the commit, on the same partitions
    assert batches.pending() == [
        ("pw-customers-changelog", partition_for(b"c1", 4), b"c1", b"x"),
        ("pw-customers-changelog", partition_for(b"c2", 4), b"c2", b"y"),
    ]


def test_exactly_once_is_refused_until_it_works(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store="memory://", processing_guarantee="exactly_once")
    with pytest.raises(ConfigError, match="exactly_once is not supported yet"):
        create_app(settings)
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    # Faust's setting decorator hides the property's type (an enum member) from mypy.
    guarantee = cast("ProcessingGuarantee", app.conf.processing_guarantee)
    assert guarantee.value == "at_least_once"


async def test_a_crashed_app_exits_if_its_shutdown_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's shutdown after a crash can hang on the consumer; the app then exits."""
    import asyncio

    from streams import app as app_module

    exits: list[BaseException] = []
    monkeypatch.setattr(app_module, "exit_after_crash", exits.append)
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    app.crash_exit_after_s = 0.05
    await app.crash(RuntimeError("boom"))
    assert exits == []
    await asyncio.sleep(0.2)
    assert [str(e) for e in exits] == ["boom"]
