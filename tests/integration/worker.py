"""A real `profitwatch worker` process for tests: started, watched and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from models.settings import Settings
from tests.integration.cli_process import spawn_cli

READY = "[^Worker]: Ready"


def service_env(bootstrap: str, broker_kind: str, unique: str, data_dir: Path) -> dict[str, str]:
    """Settings for one test's service: its own topics, group and data dir."""
    kind = "tansu" if broker_kind == "tansu" else "kafka"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROFITWATCH_BROKER_KIND": kind,
        "PROFITWATCH_APP_ID": f"pw-{unique}",
        "PROFITWATCH_DATA_DIR": str(data_dir),
        "PROFITWATCH_SWEEP_INTERVAL_SECONDS": "0",
    }
    for field in type(Settings().topics).model_fields:
        env[f"PROFITWATCH_TOPICS__{field.upper()}"] = (
            f"{getattr(Settings().topics, field)}-{unique}"
        )
    return env


def settings_from(env: dict[str, str]) -> Settings:
    old = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(old)


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = dict(os.environ) | env | {"PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0, *, web: bool = False) -> float:
        """Start and wait for Faust's Ready line; returns seconds to ready. With `web`
        the worker serves its web routes on PROFITWATCH_WEB_PORT of its env."""
        started = time.monotonic()
        offset = self.spawn(web=web)
        self.wait_ready(offset, started + timeout_s)
        return time.monotonic() - started

    def spawn(self, *, web: bool = False) -> int:
        """Start the process; returns where its output starts in the log."""
        args = ["worker", "-l", "info"] + ([] if web else ["--without-web"])
        self.proc, offset = spawn_cli(args, self.env, self.log_path)
        return offset

    def run_to_exit(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Start a worker expected to refuse to run: its exit code and its output.
        Stopped by pid if it does not exit in time (and the wait then raises)."""
        offset = self.spawn()
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout_s)
        finally:
            self.stop()
        return rc, self.output(offset)

    def output(self, offset: int = 0) -> str:
        return self.log_path.read_bytes()[offset:].decode("utf-8", "replace")

    def wait_ready(self, offset: int, deadline: float) -> None:
        """Until the Ready line after ``offset``; stops the worker and raises if it exits
        or the deadline (a `time.monotonic()` value) passes first."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if READY in self.output(offset):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        self.stop()
        raise RuntimeError(f"worker not ready in time:\n{tail}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace_s: float = 15.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
