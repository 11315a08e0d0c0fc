"""A broker as a child process: started on a free port, ready once it answers a Kafka
Metadata request that advertises its own address, stopped by pid.

The two brokers this project runs (tansu in ``streams/broker.py``, Apache Kafka in
``streams/apache_kafka.py``) share this lifecycle and differ only in how they are
prepared and spawned.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from models.errors import ProfitwatchError

__all__ = [
    "BrokerError",
    "BrokerProcess",
    "ClosedByBroker",
    "SaslLogin",
    "SaslRefused",
    "free_port",
    "metadata_brokers",
]

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


class ClosedByBroker(ConnectionError):
    """The broker closed the connection instead of answering (a listener that wants
    TLS or SASL first, or one that is shutting down)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ClosedByBroker("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _connect(
    host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None
) -> socket.socket:
    """A connection to ``host:port``; with a context, TLS, its handshake done (and the
    broker's certificate checked) within the timeout."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    if ssl_context is None:
        return sock
    try:
        return ssl_context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _round_trip(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """One request (header v1) and its response's body (after the correlation id)."""
    client_id = b"profitwatch-probe"
    correlation_id = 1
    request = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(request) + len(body)) + request + body)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    data = _recv_exact(sock, size)
    (got_id,) = struct.unpack_from(">i", data, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"response for correlation id {got_id}")
    return data[4:]


@dataclass(frozen=True)
class SaslLogin:
    """What the probe authenticates with on a SASL listener."""

    mechanism: str  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    username: str
    password: str = field(repr=False)


class SaslRefused(ProfitwatchError):
    """The broker refused the SASL mechanism or the credentials: a wrong setting, not
    a broker that is not there yet."""


def metadata_brokers(
    host: str,
    port: int,
    timeout: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    sasl: SaslLogin | None = None,
) -> list[tuple[int, str, int]]:
    """Send one Kafka Metadata v4 request (all topics); return the advertised brokers.
    With ``ssl_context`` over TLS; with ``sasl``, after authenticating (a SASL
    listener answers nothing else before): raises ``SaslRefused`` when the broker says
    no.

    Hand-rolled on purpose: one round trip (a few with SASL) with a hard timeout, no
    client library retries or API-version probing hiding how long it really took, or
    hiding why it failed (kafka-python 3.0 reports a refused login as "socket
    disconnected"). Version 4 is the oldest Kafka 4 still answers (KIP-896 removed
    0-3) and tansu answers it too.
    """
    with _connect(host, port, timeout, ssl_context) as sock:
        if sasl is not None:
            _sasl_login(sock, sasl)
        # Body: topics = null (all), allow_auto_topic_creation = false.
        data = _round_trip(sock, 3, 4, struct.pack(">ib", -1, 0))
    # Response: throttle_time_ms, then the brokers array.
    _throttle, n_brokers = struct.unpack_from(">ii", data, 0)
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


def _string(data: bytes, pos: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", data, pos)
    if length < 0:
        return None, pos + 2
    return data[pos + 2 : pos + 2 + length].decode(), pos + 2 + length


def _sasl_login(sock: socket.socket, login: SaslLogin) -> None:
    """SaslHandshake v1, then the mechanism's SaslAuthenticate v1 exchange."""
    name = login.mechanism.encode()
    data = _round_trip(sock, 17, 1, struct.pack(">h", len(name)) + name)
    error, n = struct.unpack_from(">hi", data, 0)
    enabled, pos = [], 6
    for _ in range(max(n, 0)):
        mechanism, pos = _string(data, pos)
        enabled.append(mechanism or "")
    if error == 34:  # ILLEGAL_SASL_STATE: a listener that does no SASL
        raise SaslRefused("the listener does not do SASL")
    if error != 0:  # 33, UNSUPPORTED_SASL_MECHANISM
        raise SaslRefused(
            f"SASL mechanism {login.mechanism} is not enabled "
            f"(the listener enables: {', '.join(enabled) or 'none'})"
        )
    if login.mechanism == "PLAIN":  # RFC 4616: authzid NUL authcid NUL password
        _authenticate(sock, f"\0{login.username}\0{login.password}".encode())
    elif login.mechanism in _SCRAM_HASHES:
        _scram(sock, login, _SCRAM_HASHES[login.mechanism])
    else:
        raise SaslRefused(f"SASL mechanism {login.mechanism} is not one the probe speaks")


def _authenticate(sock: socket.socket, auth_bytes: bytes) -> bytes:
    """One SaslAuthenticate v1 round trip: the broker's answer, or ``SaslRefused``."""
    data = _round_trip(sock, 36, 1, struct.pack(">i", len(auth_bytes)) + auth_bytes)
    (error,) = struct.unpack_from(">h", data, 0)
    message, pos = _string(data, 2)
    if error != 0:
        raise SaslRefused(message or f"SaslAuthenticate error {error}")
    (length,) = struct.unpack_from(">i", data, pos)
    return data[pos + 4 : pos + 4 + max(length, 0)]


_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def _scram(sock: socket.socket, login: SaslLogin, digest: str) -> None:
    """RFC 5802 (RFC 7677 for SHA-256), without channel binding; the password as
    UTF-8, as Kafka's ScramFormatter takes it (no SASLprep)."""
    nonce = base64.b64encode(os.urandom(24)).decode()
    user = login.username.replace("=", "=3D").replace(",", "=2C")
    client_first_bare = f"n={user},r={nonce}"
    server_first = _authenticate(sock, f"n,,{client_first_bare}".encode()).decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(",") if "=" in part)
    if "e" in attrs:
        raise SaslRefused(f"SCRAM: {attrs['e']}")
    if not attrs.get("r", "").startswith(nonce) or "s" not in attrs or "i" not in attrs:
        raise SaslRefused(f"SCRAM: an unexpected server-first message {server_first!r}")
    try:
        salt, iterations = base64.b64decode(attrs["s"], validate=True), int(attrs["i"])
    except ValueError:  # binascii.Error too
        raise SaslRefused(f"SCRAM: an unexpected server-first message {server_first!r}") from None
    client_final_bare = f"c=biws,r={attrs['r']}"
    salted = hashlib.pbkdf2_hmac(digest, login.password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", digest)
    stored_key = hashlib.new(digest, client_key).digest()
    auth_message = f"{client_first_bare},{server_first},{client_final_bare}".encode()
    signature = hmac.digest(stored_key, auth_message, digest)
    proof = base64.b64encode(bytes(k ^ s for k, s in zip(client_key, signature, strict=True)))
    server_final = _authenticate(sock, f"{client_final_bare},p={proof.decode()}".encode())
    server_key = hmac.digest(salted, b"Server Key", digest)
    expected = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, digest))
    if not hmac.compare_digest(server_final, expected):  # the broker must know the password too
        raise SaslRefused("SCRAM: the broker's final message does not prove the password")


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
