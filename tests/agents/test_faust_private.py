"""Pins the parts of Faust that are not its public API (streams/faust_private.py), so
an upgrade of faust-streaming that changes one fails here, by name."""

from __future__ import annotations

import inspect
import weakref
from pathlib import Path
from typing import Any, cast

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT

from models.settings import Settings
from streams import faust_private
from streams.app import create_app


def test_the_tested_faust_version_is_installed() -> None:
    assert faust.__version__.startswith(faust_private.TESTED)


def test_current_event_is_what_faust_reads_for_the_current_record() -> None:
    class Record:
        pass

    # A stand-in for an event: Faust's context holds only a weak reference to it.
    record = cast("EventT[Any]", Record())
    token = faust_private.CURRENT_EVENT.set(weakref.ref(record))
    try:
        assert faust.current_event() is record
    finally:
        faust_private.CURRENT_EVENT.reset(token)
    assert faust.current_event() is None


def test_faust_drops_fetched_records_of_paused_partitions_unless_buffered() -> None:
    """Consumer.getmany hands over a fetched record only while its partition is active
    or in `_buffered_partitions`; pause_partitions touches neither that set nor more."""
    getmany = inspect.getsource(Consumer.getmany)
    assert "tp in active_partitions" in getmany
    assert "or tp in self._buffered_partitions" in getmany
    pause = inspect.getsource(Consumer.pause_partitions)
    assert "_buffered_partitions" not in pause


def test_deliver_fetched_adds_to_fausts_buffered_partitions(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    consumer = app.consumer
    tp = faust.types.TP("orders", 1)
    faust_private.deliver_fetched(consumer, {tp})
    # Faust's private set, not on ConsumerT: pinned here on purpose.
    assert tp in consumer._buffered_partitions  # type: ignore[attr-defined]


def test_fausts_producer_keeps_its_aiokafka_producer_as_producer(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    assert "_producer" in vars(app.producer) or hasattr(type(app.producer), "_producer")
    # Faust's private attribute, not on ProducerT: pinned here on purpose.
    assert faust_private.aiokafka_producer(app) is app.producer._producer  # type: ignore[attr-defined]


async def test_the_consumer_fetches_wait_as_long_as_the_settings_say(tmp_path: Path) -> None:
    """Faust fixes `fetch_max_wait_ms=1500`; the app's transport builds the same
    aiokafka consumer with the settings' value, which aiokafka hands its fetcher."""
    app = create_app(Settings(data_dir=tmp_path, store="memory://", fetch_max_wait_ms=123))
    # Faust's private attribute, not on ConsumerT: pinned here on purpose.
    thread = app.consumer._thread  # type: ignore[attr-defined]
    assert isinstance(thread, faust_private._ConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 123
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(type(consumer).start)
    # Faust's own builder still passes 1500, so without ours the wait would be Faust's.
    source = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in source


def test_fausts_stream_acks_the_records_it_skips_even_without_acks() -> None:
    """Why `own_acks` exists: with `noack()` Faust's stream still acks a record it
    skips (an older generation, or flow control off), which no agent ever took."""
    source = inspect.getsource(faust.Stream._py_aiter)
    assert "message.generation_id != self.app.consumer_generation_id" in source
    assert "do_ack or value is skipped_value" in source


def test_the_consumer_takes_acks_only_inside_own_acks(tmp_path: Path, monkeypatch: Any) -> None:
    taken: list[Any] = []

    def ack(self: Any, message: Any) -> bool:
        taken.append(message)
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "ack", ack)
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    consumer = app.consumer
    assert isinstance(consumer, faust_private._Consumer)
    assert consumer.ack("skipped by Faust") is False
    with faust_private.own_acks(app):
        assert consumer.ack("applied and delivered") is True
    assert consumer.ack("skipped again") is False
    assert taken == ["applied and delivered"]
    assert faust_private.skipped_acks(app) == 2


def test_faust_commits_what_new_offset_says_of_its_acked_lists() -> None:
    """The override's seams: Faust's commit asks `_new_offset` per partition, which
    reads the per-partition `_acked` list, `_acked_index` set and `_gap` tree."""
    source = inspect.getsource(Consumer._filter_committable_offsets)
    assert "self._new_offset(tp)" in source
    own = inspect.getsource(Consumer._new_offset)
    assert all(name in own for name in ("self._acked[tp]", "self._gap[tp]", "_acked_index"))


def test_the_offset_to_commit_is_the_highest_acked_plus_one(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    consumer: Any = app.consumer
    tp = faust.types.TP("orders", 1)
    # Faust's own: a duplicate (left by a merged gap acked for real) splits the run.
    consumer._acked[tp] = [5, 6, 6, 7]
    consumer._acked_index[tp] = {5, 6, 7}
    assert Consumer._new_offset(consumer, tp) == 7  # 7 stays unacknowledged for Faust
    consumer._acked[tp] = [5, 6, 6, 7]
    consumer._acked_index[tp] = {5, 6, 7}
    assert consumer._new_offset(tp) == 8
    assert consumer._acked[tp] == [] and not consumer._acked_index[tp]
    assert consumer._new_offset(tp) is None  # nothing acked since
