"""A real `profitwatch worker` process for tests: started, watched and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from models.settings import Settings

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
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-l", "info"]
            + ([] if web else ["--without-web"]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        while time.monotonic() - started < timeout_s:
            text = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            if READY in text:
                return time.monotonic() - started
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        self.stop()
        raise RuntimeError(f"worker not ready within {timeout_s}s:\n{tail}")

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
