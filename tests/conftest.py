"""Shared fixtures: one Kafka broker for the whole test session (as Quix Streams' tests do).

Which broker, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` set: that external broker, untouched (nothing is stopped).
2. A Docker engine answers: a testcontainers Kafka (the module's Confluent image in KRaft
   mode; ``KafkaContainer``'s start script is Confluent-specific, ``apache/kafka`` images
   do not boot under it).
3. Otherwise: an embedded tansu broker (``streams.broker.EmbeddedBroker``) on a free port.

Tests share the broker, so they use ``unique`` in their topic and group names (as Faust's
own integration tests do) instead of cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from streams.broker import EmbeddedBroker

BrokerKind = Literal["external", "testcontainers", "tansu"]


@dataclass(frozen=True)
class KafkaUnderTest:
    kind: BrokerKind
    bootstrap: str


def _docker_answers(timeout: float = 2.0) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _kafka_container() -> Any:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer().with_kraft()


@pytest.fixture(scope="session")
def _kafka() -> Iterator[KafkaUnderTest]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield KafkaUnderTest("external", external)
        return
    if _docker_answers():
        container = _kafka_container()
        try:
            container.start(timeout=120)
        except Exception as exc:
            warnings.warn(
                f"Docker answers but the Kafka container did not start ({exc!r}); "
                "using the embedded tansu broker",
                stacklevel=1,
            )
            with contextlib.suppress(Exception):
                container.stop()
        else:
            try:
                yield KafkaUnderTest("testcontainers", container.get_bootstrap_server())
            finally:
                container.stop()
            return
    broker = EmbeddedBroker().start()
    try:
        yield KafkaUnderTest("tansu", broker.bootstrap)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka: KafkaUnderTest) -> str:
    """``host:port`` of the session's broker."""
    return _kafka.bootstrap


@pytest.fixture(scope="session")
def broker_kind(_kafka: KafkaUnderTest) -> BrokerKind:
    """``"external"``, ``"testcontainers"`` or ``"tansu"``: which broker the session uses."""
    return _kafka.kind


@pytest.fixture
def unique() -> str:
    """A short random suffix for topic and group names (8 hex digits)."""
    return uuid.uuid4().hex[:8]
