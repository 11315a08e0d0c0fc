"""Shared fixtures: one Kafka broker for the whole test session (as Quix Streams' tests do).

Which broker, in order (the session's header says which one it runs on):

1. ``KAFKA_BOOTSTRAP_SERVERS`` set: that external broker, untouched (nothing is stopped).
2. A Docker engine answers: a testcontainers Kafka (the module's Confluent image in KRaft
   mode; ``KafkaContainer``'s start script is Confluent-specific, ``apache/kafka`` images
   do not boot under it).
3. Java >= 17 and Maven (or the jars already cached): Apache Kafka from Maven Central
   (``streams.apache_kafka.ApacheKafkaBroker``) on a free port.
4. Otherwise: an embedded tansu broker (``streams.broker.EmbeddedBroker``) on a free port.

``tansu_bootstrap`` is a tansu broker whatever the session's broker is, for the test that
keeps the demo's broker honest.

Tests share the broker, so they use ``unique`` in their topic and group names (as Faust's
own integration tests do) instead of cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from streams.apache_kafka import ApacheKafkaBroker, kafka_available
from streams.broker import EmbeddedBroker
from tests.brokers import BrokerKind, KafkaUnderTest, describe, planned_broker


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI runner giving up, `kill`) would end Python without tearing down
    # fixtures, leaving the brokers and workers they started running: take it as an
    # interrupt, so pytest tears down as on Ctrl-C and everything is stopped by pid.
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_report_header(config: pytest.Config) -> str:
    return f"broker: {describe(planned_broker())}"


def _kafka_container() -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer().with_kraft()


def _own_broker(kind: Literal["kafka", "tansu"]) -> Iterator[KafkaUnderTest]:
    if kind == "kafka":
        kafka = ApacheKafkaBroker().start()
        try:
            yield KafkaUnderTest("kafka", kafka.bootstrap, kafka.log_dir)
        finally:
            kafka.stop()
        return
    tansu = EmbeddedBroker().start()
    try:
        yield KafkaUnderTest("tansu", tansu.bootstrap)
    finally:
        tansu.stop()


@pytest.fixture(scope="session")
def _kafka() -> Iterator[KafkaUnderTest]:
    kind = planned_broker()
    if kind == "external":
        yield KafkaUnderTest("external", os.environ["KAFKA_BOOTSTRAP_SERVERS"].strip())
        return
    if kind == "testcontainers":
        container = _kafka_container()
        try:
            container.start(timeout=120)
        except Exception as exc:
            fallback: Literal["kafka", "tansu"] = "kafka" if kafka_available() else "tansu"
            warnings.warn(
                f"Docker answers but the Kafka container did not start ({exc!r}); "
                f"using {describe(fallback)}",
                stacklevel=1,
            )
            with contextlib.suppress(Exception):
                container.stop()
            yield from _own_broker(fallback)
            return
        try:
            yield KafkaUnderTest("testcontainers", container.get_bootstrap_server())
        finally:
            container.stop()
        return
    yield from _own_broker(kind)


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka: KafkaUnderTest) -> str:
    """``host:port`` of the session's broker."""
    return _kafka.bootstrap


@pytest.fixture(scope="session")
def broker_kind(_kafka: KafkaUnderTest) -> BrokerKind:
    """Which broker the session uses: external, testcontainers, kafka (ours) or tansu."""
    return _kafka.kind


@pytest.fixture(scope="session")
def kafka_log_dir(_kafka: KafkaUnderTest) -> Path | None:
    """The session broker's log dir when this session started it (Apache Kafka)."""
    return _kafka.log_dir


@pytest.fixture(scope="session")
def tansu_bootstrap(_kafka: KafkaUnderTest) -> Iterator[str]:
    """A tansu broker: the session's own when it is tansu, else one started for this."""
    if _kafka.kind == "tansu":
        yield _kafka.bootstrap
        return
    yield from (k.bootstrap for k in _own_broker("tansu"))


@pytest.fixture
def unique() -> str:
    """A short random suffix for topic and group names (8 hex digits)."""
    return uuid.uuid4().hex[:8]
