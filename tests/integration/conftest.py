"""Integration fixtures: a service's own topics, group and data dir per test, and
every worker a test starts stopped by pid when it ends, on failure too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.settings import Settings
from streams.topics import ensure_topics
from tests.integration.worker import WorkerProcess, service_env, settings_from

Service = tuple[dict[str, str], Settings, list[WorkerProcess]]


def _service(bootstrap: str, broker_kind: str, unique: str, data_dir: Path) -> Iterator[Service]:
    env = service_env(bootstrap, broker_kind, unique, data_dir)
    settings = settings_from(env)
    ensure_topics(settings)
    workers: list[WorkerProcess] = []
    try:
        yield env, settings, workers
    finally:
        for w in workers:
            w.stop()
        for w in workers:
            if w.proc is not None:
                assert w.proc.poll() is not None, "worker left running"


@pytest.fixture
def service(
    kafka_bootstrap: str, broker_kind: str, unique: str, tmp_path: Path
) -> Iterator[Service]:
    """A service on the session's broker."""
    yield from _service(kafka_bootstrap, broker_kind, unique, tmp_path / "data")


@pytest.fixture
def tansu_service(tansu_bootstrap: str, unique: str, tmp_path: Path) -> Iterator[Service]:
    """A service on tansu, the demo's broker, whatever the session's broker is."""
    yield from _service(tansu_bootstrap, "tansu", unique, tmp_path / "data")
