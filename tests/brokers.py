"""Which broker the test session runs on, decided once (see tests/conftest.py)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streams.apache_kafka import java_major, kafka_available, kafka_version

BrokerKind = Literal["external", "testcontainers", "kafka", "tansu"]


@dataclass(frozen=True)
class KafkaUnderTest:
    kind: BrokerKind
    bootstrap: str
    log_dir: Path | None = None  # the partitions' segments, when the broker is ours


def docker_answers(timeout: float = 2.0) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@functools.cache
def planned_broker() -> BrokerKind:
    """The broker this session runs on, decided once (the header and the fixture agree)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        return "external"
    if docker_answers():
        return "testcontainers"
    if kafka_available():
        return "kafka"
    return "tansu"


def describe(kind: BrokerKind) -> str:
    if kind == "external":
        return f"external Kafka at {os.environ['KAFKA_BOOTSTRAP_SERVERS'].strip()}"
    if kind == "testcontainers":
        return "Kafka in a Docker container (testcontainers)"
    if kind == "kafka":
        return f"Apache Kafka {kafka_version()} from Maven Central (Java {java_major()})"
    return "tansu, the embedded Kafka-compatible broker (no Java or Docker here)"
