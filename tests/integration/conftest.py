"""Integration fixtures: a service's own topics, group and data dir per test, and
every worker a test starts stopped by pid when it ends, on failure too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.settings import Settings
from streams.topics import ensure_topics
from tests.integration.worker import WorkerProcess, service_env, settings_from


@pytest.fixture
def service(
    kafka_bootstrap: str, broker_kind: str, unique: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Settings, list[WorkerProcess]]]:
    env = service_env(kafka_bootstrap, broker_kind, unique, tmp_path / "data")
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
