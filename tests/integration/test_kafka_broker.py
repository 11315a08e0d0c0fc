"""Apache Kafka from Maven Central (streams/apache_kafka.py): its lifecycle, its data dir,
`profitwatch broker --kind kafka`, and what a test broker must offer (transactions)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient

from streams import apache_kafka
from streams.apache_kafka import ApacheKafkaBroker, kafka_available, kafka_version
from streams.broker_process import BrokerError, metadata_brokers
from tests.kafka_helpers import accepts_connections, create_topics, pid_alive, produce, read_topic

needs_kafka = pytest.mark.skipif(
    not kafka_available(), reason="Apache Kafka needs Java >= 17 and Maven (or its jars cached)"
)
pytestmark = pytest.mark.timeout(180)


def test_the_pom_pins_a_kafka_4_version() -> None:
    version = kafka_version()
    assert version.split(".")[0] == "4", version
    assert apache_kafka.BROKER_SETTINGS["offsets.topic.replication.factor"] == "1"


@needs_kafka
def test_starts_on_a_free_port_advertises_it_and_stops_by_pid() -> None:
    broker = ApacheKafkaBroker()
    try:
        broker.start()
        assert broker.pid is not None and pid_alive(broker.pid)
        port = broker.port
        assert port is not None
        assert [(1, "127.0.0.1", port)] == metadata_brokers("127.0.0.1", port, 5.0)
        data_dir = broker.data_dir
        assert data_dir is not None and (broker.log_dir / "meta.properties").exists()
        pid = broker.pid
    finally:
        broker.stop()
    assert not pid_alive(pid)
    assert not data_dir.exists()  # a temp data dir goes with the broker
    assert broker.pid is None
    broker.stop()  # idempotent


@needs_kafka
def test_a_data_dir_keeps_topics_and_records_across_restarts(tmp_path: Path, unique: str) -> None:
    topic = f"kept-{unique}"
    with ApacheKafkaBroker(data_dir=tmp_path / "kafka") as first:
        create_topics(first.bootstrap, [topic], partitions=2)
        produce(first.bootstrap, [(topic, b"k", b"v1", None), (topic, b"k", b"v2", None)])
    assert (tmp_path / "kafka" / "logs" / "meta.properties").exists()
    with ApacheKafkaBroker(data_dir=tmp_path / "kafka") as second:  # formatted once only
        got = read_topic(second.bootstrap, topic, idle_s=1.0, timeout_s=30)
    assert [r.value for r in got] == [b"v1", b"v2"]


def test_no_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn
    apache_kafka.java_major.cache_clear()
    try:
        with pytest.raises(BrokerError, match="needs Java >= 17"):
            ApacheKafkaBroker().start()
        assert not kafka_available()
    finally:
        apache_kafka.java_major.cache_clear()


def test_no_maven_and_no_cache_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROFITWATCH_KAFKA_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="no Maven"):
        apache_kafka.resolve_classpath()


@needs_kafka
def test_profitwatch_broker_kind_kafka_prints_its_address_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker", "--kind", "kafka", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
        bootstrap = line.split("=", 1)[1]
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-tests")
        try:
            assert admin.describe_cluster()["brokers"]
        finally:
            admin.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while accepts_connections(bootstrap) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not accepts_connections(bootstrap), "the broker outlived the command"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_transactions_commit_and_abort_on_the_session_broker(
    kafka_bootstrap: str, broker_kind: str, unique: str
) -> None:
    """The test broker's transaction state topic has one replica, so transactions work
    (tansu's do not: issue 12)."""
    if broker_kind == "tansu":
        pytest.skip("tansu has no working transactions")
    topic = f"tx-{unique}"
    create_topics(kafka_bootstrap, [topic], partitions=1)

    async def run() -> list[bytes | None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{unique}"
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed")
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"after")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: list[bytes | None] = []
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"committed", b"after"]
