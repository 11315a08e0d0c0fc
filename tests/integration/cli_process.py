"""A `profitwatch` command run as its own process group by a test, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spawn_cli(
    args: list[str], env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m streams.cli *args` in its own process group, appending to `log_path`;
    the process and where its output starts in the log."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc, offset


class CliProcess:
    """`python -m streams.cli *args`, its output appended to `log_path`."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path) -> None:
        self.env = dict(os.environ) | env | {"PYTHONUNBUFFERED": "1"}
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self) -> CliProcess:
        self.proc, self.offset = spawn_cli(self.args, self.env, self.log_path)
        return self

    def output(self) -> str:
        """What this start of it has written."""
        return self.log_path.read_bytes()[self.offset :].decode("utf-8", "replace")

    def alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.args[:2]} exited ({self.proc.returncode}):\n{self.output()[-3000:]}"
            )

    def wait_for(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        """Until `done()`; fails at once if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return
            self.alive()
            time.sleep(0.05)
        raise AssertionError(f"no {what} in {timeout_s} s:\n{self.output()[-3000:]}")

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, by pid; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """Whatever state it is in, it is gone after this (the tests' finally)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
