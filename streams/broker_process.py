"""A broker as a child process: started on a free port, ready once it answers a Kafka
Metadata request that advertises its own address, stopped by pid.

The two brokers this project runs (tansu in ``streams/broker.py``, Apache Kafka in
``streams/apache_kafka.py``) share this lifecycle and differ only in how they are
prepared and spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from models.errors import ProfitwatchError

__all__ = ["BrokerError", "BrokerProcess", "free_port", "metadata_brokers"]

_LOG_TAIL_BYTES = 4000
_PORT_ATTEMPTS = 3  # only when the port was chosen by us: another process may grab it first


class BrokerError(ProfitwatchError):
    """A broker could not be prepared or started, or it died."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (as brokers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def metadata_brokers(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """Send one Kafka Metadata v4 request (all topics); return the advertised brokers.

    Hand-rolled on purpose: one round trip with a hard timeout, no client library
    retries or API-version probing hiding how long it really took. Version 4 is the
    oldest Kafka 4 still answers (KIP-896 removed 0-3) and tansu answers it too.
    """
    client_id = b"profitwatch-probe"
    correlation_id = 1
    # Request header v1 (api_key 3 = Metadata, version 4); body: topics = null (all),
    # allow_auto_topic_creation = false.
    request = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    request += struct.pack(">ib", -1, 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    # Response: correlation id, throttle_time_ms, then the brokers array.
    got_id, _throttle, n_brokers = struct.unpack_from(">iii", data, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"metadata response for correlation id {got_id}")
    pos = 12
    brokers = []
    for _ in range(n_brokers):
        node_id, host_len = struct.unpack_from(">ih", data, pos)
        pos += 6
        broker_host = data[pos : pos + host_len].decode()
        pos += host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)


class ExitedEarly(BrokerError):
    """The process died while starting (perhaps its port was taken meanwhile)."""


class BrokerProcess:
    """One broker process on ``host:port`` (a free port when ``port`` is None or 0).

    ``start()`` returns once the broker answers a Kafka Metadata request that advertises
    this very address. Use it as a context manager to be sure it is stopped::

        with SomeBroker() as broker:
            produce_to(broker.bootstrap)

    Subclasses say what to run (``_command``) and may prepare files first (``_prepare``).
    """

    name = "broker"
    stop_grace_s = 5.0

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.host = host
        self._requested_port = port or None  # 0 means "any free port", like None
        self._port: int | None = self._requested_port
        self._log_path = log_path
        self._own_log: Path | None = None  # a temp log we created (and remove on stop)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., BrokerProcess] | None = None

    # -- what subclasses provide -----------------------------------------------------

    def _prepare(self, port: int) -> None:
        """Called before each spawn, with the port it will listen on."""

    def _command(self, port: int) -> tuple[Sequence[str], dict[str, str]]:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """Called after the process is stopped: remove what ``_prepare`` made for it."""

    # -- properties ------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        if self._port is None:
            raise BrokerError(f"the {self.name} broker has no port yet: call start() first")
        return f"{self.host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (None before start and after stop)."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def log_path(self) -> Path | None:
        """Where the broker writes its log (a temp file unless one was given)."""
        return self._log_path if self._log_path is not None else self._own_log

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> Self:
        """Spawn the broker and wait until it answers Kafka metadata requests.

        Raises ``BrokerError`` (with the tail of the broker's log) if the process exits
        or is not ready within ``timeout`` seconds; the process is stopped first.
        """
        if self.running:
            return self
        deadline = time.monotonic() + timeout
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self._port = self._requested_port or free_port(self.host)
            if not port_free(self.host, self._port):
                if attempt == attempts:
                    raise BrokerError(f"{self.host}:{self._port} is already in use")
                continue
            try:
                self._prepare(self._port)
                self._spawn()
                self._wait_ready(deadline)
                return self
            except ExitedEarly as exc:
                self.stop()
                if attempt == attempts or time.monotonic() >= deadline:
                    raise BrokerError(str(exc)) from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        assert self._port is not None
        cmd, env = self._command(self._port)
        if self._log_path is None and self._own_log is None:
            fd, name = tempfile.mkstemp(prefix=f"profitwatch-{self.name}-", suffix=".log")
            os.close(fd)
            self._own_log = Path(name)
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        # Kill it if the owner forgets (garbage collection or interpreter exit).
        self._finalizer = weakref.finalize(self, terminate, self._proc, self.stop_grace_s)

    def _wait_ready(self, deadline: float) -> None:
        proc, port = self._proc, self._port
        assert proc is not None and port is not None
        last_error = "no attempt made"
        while True:
            rc = proc.poll()
            if rc is not None:
                raise ExitedEarly(
                    f"{self.name} exited with rc={rc} while starting on {self.host}:{port}"
                    f"{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"{self.name} on {self.host}:{port} not ready in time ({last_error})"
                    f"{self.log_tail()}"
                )
            try:
                brokers = metadata_brokers(self.host, port, timeout=min(1.0, remaining))
            except (OSError, struct.error, UnicodeDecodeError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(min(0.02, max(remaining, 0)))
                continue
            if proc.poll() is None and any(p == port for _, _, p in brokers):
                return
            if proc.poll() is not None:
                continue  # something else answered on our port; report the exit above
            if not brokers:  # up, but not yet registered (Kafka's broker fences itself)
                last_error = "no broker in the metadata yet"
                time.sleep(min(0.05, max(remaining, 0)))
                continue
            raise BrokerError(
                f"{self.name} on {self.host}:{port} advertises {brokers}, not its own "
                f"address{self.log_tail()}"
            )

    def log_tail(self) -> str:
        """The last few KB of the broker's log, as a block to append to a message."""
        path = self.log_path
        if path is None:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                tail = f.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return f"\n--- {path} (tail) ---\n{tail}" if tail else f"\n({path} is empty)"

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Safe to call any number of times."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            terminate(proc, self.stop_grace_s if grace is None else grace)
        self._cleanup()
        if self._own_log is not None:
            with contextlib.suppress(OSError):
                self._own_log.unlink()
            self._own_log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else self.host
        return f"<{type(self).__name__} {where} pid={self.pid}>"
