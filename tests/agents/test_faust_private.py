"""Pins the parts of Faust that are not its public API (streams/faust_private.py), so
an upgrade of faust-streaming that changes one fails here, by name."""

from __future__ import annotations

import inspect
import weakref
from pathlib import Path

import faust
from faust.transport.consumer import Consumer

from models.settings import Settings
from streams import faust_private
from streams.app import create_app


def test_the_tested_faust_version_is_installed() -> None:
    assert faust.__version__.startswith(faust_private.TESTED)


def test_current_event_is_what_faust_reads_for_the_current_record() -> None:
    class Record:
        pass

    record = Record()
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
    assert tp in consumer._buffered_partitions


def test_fausts_producer_keeps_its_aiokafka_producer_as_producer(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, store="memory://"))
    assert "_producer" in vars(app.producer) or hasattr(type(app.producer), "_producer")
    assert faust_private.aiokafka_producer(app) is app.producer._producer
