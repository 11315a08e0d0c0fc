"""How a worker starts: it refuses topics it cannot be correct with, it waits for a
broker that is not there yet (saying so), and on Apache Kafka its group settings are
ones a production cluster accepts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from models.settings import Settings
from streams.app import app_config
from streams.broker import EmbeddedBroker, free_port
from tests.integration.worker import WorkerProcess, service_env, settings_from
from tests.kafka_helpers import create_topics

pytestmark = pytest.mark.timeout(120)


def test_a_co_partitioned_topic_of_another_partition_count_stops_the_start(
    kafka_bootstrap: str, broker_kind: str, unique: str, tmp_path: Path
) -> None:
    env = service_env(kafka_bootstrap, broker_kind, unique, tmp_path / "data")
    settings = settings_from(env)
    assert settings.partitions == 4
    # Someone created the orders topic by hand, with 3 partitions: the service would
    # join a customer's orders and tickets on different partitions.
    create_topics(kafka_bootstrap, [settings.topics.orders], partitions=3)
    rc, out = WorkerProcess(env, tmp_path / "worker.log").run_to_exit(60)
    assert rc == 2, out
    assert f"topic {settings.topics.orders} has 3 partitions, the service needs 4" in out
    assert "Traceback" not in out
    assert "[^Worker]: Ready" not in out


def test_an_unreachable_broker_is_reported_and_retried_until_it_answers(
    unique: str, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(f"127.0.0.1:{port}", "tansu", unique, tmp_path / "data")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    broker = EmbeddedBroker(port=port)
    try:
        offset = worker.spawn()
        deadline = time.monotonic() + 30
        while worker.output(offset).count("is unreachable") < 3 and time.monotonic() < deadline:
            assert worker.proc is not None and worker.proc.poll() is None, worker.output()
            time.sleep(0.1)
        out = worker.output(offset)
        assert out.count(f"Kafka at 127.0.0.1:{port} is unreachable") >= 3, out
        assert "Connection refused" in out and "retrying in" in out
        assert worker.proc is not None and worker.proc.poll() is None  # still trying

        broker.start()
        worker.wait_ready(offset, time.monotonic() + 60)
        assert f"Kafka at 127.0.0.1:{port} answers after" in worker.output(offset)
    finally:
        worker.stop()
        broker.stop()


def test_an_unreachable_broker_ends_the_start_when_told_to_give_up(
    unique: str, tmp_path: Path
) -> None:
    env = service_env(f"127.0.0.1:{free_port()}", "kafka", unique, tmp_path / "data")
    env["PROFITWATCH_BROKER_WAIT_SECONDS"] = "2"
    rc, out = WorkerProcess(env, tmp_path / "worker.log").run_to_exit(30)
    assert rc == 2, out
    assert "profitwatch worker: Kafka at 127.0.0.1:" in out and "is unreachable after" in out
    assert "Traceback" not in out


def test_the_group_settings_on_kafka_are_valid_for_a_production_cluster() -> None:
    """A broker refuses a session outside group.min/max.session.timeout.ms (6 s and
    30 min by default); heartbeats must come well inside the session."""
    conf = app_config(Settings(broker_kind="kafka"))
    assert 6.0 <= conf["broker_session_timeout"] <= 1800.0
    assert conf["broker_heartbeat_interval"] <= conf["broker_session_timeout"] / 3
    assert "producer_max_batch_size" not in conf  # tansu's one-record batches: not here


def test_the_session_broker_accepts_the_workers_session_timeout(
    kafka_bootstrap: str, broker_kind: str
) -> None:
    """The broker's own bounds, read from it (tansu has no such configs)."""
    if broker_kind == "tansu":
        pytest.skip("tansu has no group.min.session.timeout.ms")
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="profitwatch-tests")
    try:
        node = str(admin.describe_cluster()["brokers"][0]["broker_id"])
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, node)], config_filter="all"
        )
    finally:
        admin.close()
    configs = {k: v["value"] for k, v in described["broker"][node].items()}
    session_ms = Settings().session_timeout_seconds * 1000
    assert int(configs["group.min.session.timeout.ms"]) <= session_ms
    assert session_ms <= int(configs["group.max.session.timeout.ms"])


def test_exactly_once_is_refused_at_start_up_with_the_reason(
    kafka_bootstrap: str, broker_kind: str, unique: str, tmp_path: Path
) -> None:
    """exactly_once would put the inputs' offsets in a transaction that the commit's
    states and snapshots are not in: refused until it works (README, Guarantees)."""
    env = service_env(kafka_bootstrap, broker_kind, unique, tmp_path / "data")
    env["PROFITWATCH_PROCESSING_GUARANTEE"] = "exactly_once"
    rc, out = WorkerProcess(env, tmp_path / "worker.log").run_to_exit(60)
    assert rc == 2, out
    assert "profitwatch worker: processing_guarantee=exactly_once is not supported yet" in out
    assert "Traceback" not in out and "[^Worker]: Ready" not in out
    # nothing was created on the broker before the refusal
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="profitwatch-tests")
    try:
        assert not [t for t in admin.list_topics() if t.endswith(unique)]
    finally:
        admin.close()
