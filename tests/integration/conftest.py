"""Integration fixtures: a service's own topics, group and data dir per test, and
every worker a test starts stopped by pid when it ends, on failure too. A failed test's
report carries the warnings and errors its processes logged (CI keeps no files)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from models.settings import Settings
from streams.topics import ensure_topics
from tests.integration.worker import WorkerProcess, service_env, settings_from

Service = tuple[dict[str, str], Settings, list[WorkerProcess]]

LOGGED_LINES = 60  # per log file, the last ones


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp, Path):
        return
    for log in sorted(tmp.rglob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
        lines = [ln for ln in text if "WARNING" in ln or "ERROR" in ln or "CRITICAL" in ln]
        if lines:
            shown = "\n".join(lines[-LOGGED_LINES:])
            report.sections.append((f"warnings and errors in {log.relative_to(tmp)}", shown))


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
