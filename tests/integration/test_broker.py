"""The embedded tansu broker (streams/broker.py) and the Kafka test helpers, on real
brokers (Apache Kafka's own lifecycle: test_kafka_broker.py).

Lifecycle tests start their own ``EmbeddedBroker``s. Topic and record tests use the
session's broker (``kafka_bootstrap``: Apache Kafka on this project's machines, else
testcontainers, external or tansu; see tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.apache_kafka import kafka_available
from streams.broker import BrokerError, EmbeddedBroker, free_port
from tests.brokers import docker_answers
from tests.kafka_helpers import accepts_connections, create_topics, pid_alive, produce, read_topic

pytestmark = pytest.mark.timeout(60)


def _cluster(bootstrap: str) -> dict[str, object]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-tests")
    try:
        cluster: dict[str, object] = admin.describe_cluster()
        return cluster
    finally:
        admin.close()


def _topic_names(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profitwatch-tests")
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def _fake_broker(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-tansu"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# -- the embedded broker's lifecycle ---------------------------------------------------


def test_starts_on_a_free_port_and_answers_metadata() -> None:
    started = time.monotonic()
    with EmbeddedBroker() as broker:
        ready_s = time.monotonic() - started
        assert broker.pid is not None and pid_alive(broker.pid)
        host, port = broker.bootstrap.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert broker.port == int(port)
        cluster = _cluster(broker.bootstrap)
        brokers = cluster["brokers"]
        assert isinstance(brokers, list) and len(brokers) == 1
        # The advertised address is the one we listen on, not tansu's localhost:9092.
        assert (brokers[0]["host"], brokers[0]["port"]) == ("127.0.0.1", int(port))
    assert ready_s < 10, f"ready after {ready_s:.2f} s"


def test_explicit_port_is_used() -> None:
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        assert accepts_connections(broker.bootstrap)


def test_stop_kills_the_process_and_is_idempotent() -> None:
    broker = EmbeddedBroker().start()
    pid, bootstrap = broker.pid, broker.bootstrap
    assert pid is not None
    broker.stop()
    assert broker.pid is None
    assert not pid_alive(pid)  # reaped, not a zombie
    assert not accepts_connections(bootstrap)
    broker.stop()  # no error the second time
    broker.stop(grace=0.1)
    assert broker.pid is None


def test_memory_only_a_restart_loses_every_topic(unique: str) -> None:
    with EmbeddedBroker() as broker:
        port = broker.port
        create_topics(broker.bootstrap, [f"gone-{unique}"], partitions=1)
        assert f"gone-{unique}" in _topic_names(broker.bootstrap)
    with EmbeddedBroker(port=port) as again:
        assert f"gone-{unique}" not in _topic_names(again.bootstrap)


def test_two_brokers_at_the_same_time_are_independent(unique: str) -> None:
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.port != second.port
        assert first.pid != second.pid
        create_topics(first.bootstrap, [f"only-first-{unique}"], partitions=1)
        create_topics(second.bootstrap, [f"only-second-{unique}"], partitions=1)
        produce(first.bootstrap, [(f"only-first-{unique}", b"k", b"one", None)])
        produce(second.bootstrap, [(f"only-second-{unique}", b"k", b"two", None)])
        assert f"only-second-{unique}" not in _topic_names(first.bootstrap)
        assert f"only-first-{unique}" not in _topic_names(second.bootstrap)
        got_first = read_topic(first.bootstrap, f"only-first-{unique}", expected=1, timeout_s=10)
        got_second = read_topic(second.bootstrap, f"only-second-{unique}", expected=1, timeout_s=10)
        assert [r.value for r in got_first] == [b"one"]
        assert [r.value for r in got_second] == [b"two"]


def test_port_in_use_is_an_error_and_leaves_nothing_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerError, match="in use"):
            broker.start(timeout=5)
        assert broker.pid is None


def test_a_broker_that_exits_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_broker(tmp_path, "echo 'boom: bad flag' >&2; exit 3")
    monkeypatch.setenv("CALF_TANSU_BIN", fake)
    log = tmp_path / "broker.log"
    broker = EmbeddedBroker(port=free_port(), log_path=log)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="rc=3") as info:
        broker.start(timeout=10)
    assert time.monotonic() - started < 5
    assert "boom: bad flag" in str(info.value)
    assert log.exists()  # a log we were given is kept
    assert broker.pid is None


def test_a_broker_that_never_answers_times_out_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    # Ignores SIGTERM, so stop() has to fall back to SIGKILL.
    fake = _fake_broker(tmp_path, f"echo $$ > {pid_file}; trap '' TERM; exec sleep 30")
    monkeypatch.setenv("CALF_TANSU_BIN", fake)
    broker = EmbeddedBroker()
    started = time.monotonic()
    with pytest.raises(BrokerError, match="not ready"):
        broker.start(timeout=1.0)
    # 1 s of waiting, then up to 5 s of grace before SIGKILL.
    assert time.monotonic() - started < 8
    pid = int(pid_file.read_text())
    assert not pid_alive(pid)
    assert broker.pid is None


# -- topics and records on the session's broker -----------------------------------------


def test_create_topic_with_partitions_and_config(kafka_bootstrap: str, unique: str) -> None:
    topic = f"ledger-{unique}"
    create_topics(kafka_bootstrap, [topic], partitions=4, configs={"cleanup.policy": "compact"})
    create_topics(kafka_bootstrap, [topic], partitions=4)  # exists: ignored
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="profitwatch-tests")
    try:
        (described,) = admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3]
        # tansu reports every entry as a default: the "modified" filter would return {}.
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    assert configs["topic"][topic]["cleanup.policy"]["value"] == "compact"


def test_produce_and_read_back_keys_headers_and_order(kafka_bootstrap: str, unique: str) -> None:
    topic = f"orders-{unique}"
    create_topics(kafka_bootstrap, [topic], partitions=4)
    keys = [f"c-{i}".encode() for i in range(8)]
    records = [
        (topic, keys[n % 8], f"{n}".encode(), [("seq", str(n).encode()), ("src", b"test")])
        for n in range(200)
    ]
    sent = produce(kafka_bootstrap, records)
    paced = produce(kafka_bootstrap, [(topic, None, b"no-key", None)], pace_s=0.01)

    got = read_topic(kafka_bootstrap, topic, expected=201, timeout_s=20)

    assert len(got) == 201
    assert {r.partition for r in got} <= {0, 1, 2, 3}
    assert len({r.partition for r in got if r.key is not None}) > 1, "8 keys, one partition?"
    # Every record is where the producer was told it landed.
    assert sorted((s.partition, s.offset) for s in [*sent, *paced]) == [
        (r.partition, r.offset) for r in got
    ]
    by_key: dict[bytes, list[int]] = defaultdict(list)
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for r in got:
        if r.key is None:
            assert r.value == b"no-key" and r.headers == []
            continue
        seq = int(r.value or b"")
        assert r.headers == [("seq", str(seq).encode()), ("src", b"test")]
        assert r.key == keys[seq % 8]
        by_key[r.key].append(seq)
        partition_of[r.key].add(r.partition)
    # One key, one partition, and within it the order they were sent in.
    assert all(len(parts) == 1 for parts in partition_of.values())
    for key, seqs in by_key.items():
        assert seqs == [n for n in range(200) if keys[n % 8] == key]
    # Offsets per partition are dense from 0.
    per_partition: dict[int, list[int]] = defaultdict(list)
    for r in got:
        per_partition[r.partition].append(r.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))


def test_read_topic_waits_for_a_topic_that_does_not_exist_yet(
    kafka_bootstrap: str, unique: str
) -> None:
    started = time.monotonic()
    got = read_topic(kafka_bootstrap, f"never-{unique}", idle_s=0.5, timeout_s=1.5)
    assert got == []
    assert time.monotonic() - started < 10


def test_broker_kind_matches_the_environment(broker_kind: str, kafka_bootstrap: str) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        assert broker_kind == "external"
    elif docker_answers():
        assert broker_kind == "testcontainers"
    elif kafka_available():  # Java >= 17 and Maven, as on this project's machines
        assert broker_kind == "kafka"
    else:
        assert broker_kind == "tansu"
    assert _cluster(kafka_bootstrap)["brokers"]
