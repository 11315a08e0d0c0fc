"""A test run ended with SIGTERM still stops, by pid, what its fixtures started (the
brokers and workers of the integration tests): `tests/conftest.py` takes the signal as
an interrupt, and pytest tears down as on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kafka_helpers import pid_alive

ROOT = Path(__file__).resolve().parents[2]

_TEST = """
import subprocess, time
from pathlib import Path
import pytest

@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "300"])
    Path({pidfile!r}).write_text(str(proc.pid))
    yield proc
    proc.kill()
    proc.wait()

def test_runs_until_stopped(child):
    time.sleep(300)
"""


@pytest.mark.timeout(90)
def test_sigterm_tears_down_what_fixtures_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    test = tmp_path / "test_child.py"
    test.write_text(_TEST.format(pidfile=str(pidfile)))
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    run = subprocess.Popen(
        [*argv, "-q", "-o", "addopts=", "--rootdir", str(tmp_path), str(test)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text():
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, "the test never started its child"
            time.sleep(0.1)
        child = int(pidfile.read_text())
        assert pid_alive(child)
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=30)[0].decode()
        assert run.returncode != 0, out  # interrupted, not passed
        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child), out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if pidfile.exists() and pidfile.read_text() and pid_alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
