"""Apache Kafka itself, from its Maven Central artifacts: a single node in KRaft mode
(combined broker and controller) for tests, benchmarks and a local service.

The broker's jars are resolved once with Maven (``streams/kafka/pom.xml``,
``mvn dependency:copy-dependencies``) into a cache folder named after the POM's
digest, so a changed POM resolves anew and a cached one needs neither Maven nor the
network. The cache is ``$PROFITWATCH_KAFKA_CACHE`` or ``$XDG_CACHE_HOME/profitwatch``
(``~/.cache/profitwatch``). Storage is formatted on the first start of a data dir.

The settings (``BROKER_SETTINGS``) are a test broker's: replication factor 1 for every
internal topic, so transactions work on one node; no initial rebalance delay; small
segments and a busy log cleaner, so compaction really runs. docker-compose.yml's Kafka
service uses the same ones (tests/unit/test_compose.py checks it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Self

from streams.broker_process import BrokerError, BrokerProcess, free_port, port_free

__all__ = [
    "BROKER_SETTINGS",
    "POM",
    "ApacheKafkaBroker",
    "BrokerSecurity",
    "java_major",
    "kafka_available",
    "kafka_version",
    "resolve_classpath",
]

POM = Path(__file__).with_name("kafka") / "pom.xml"
MIN_JAVA = 17  # Kafka 4's broker needs Java 17

BROKER_SETTINGS: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    # One node: every internal topic with one replica, or groups and transactions
    # never get their coordinators.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # A new group's first member is assigned at once, not after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "4",
    "auto.create.topics.enable": "false",
    # Compaction that runs while a test watches: 1 MiB segments (not 1 GiB), the
    # cleaner looking every second (not 15 s), and a small dedupe buffer (not 128 MiB).
    "log.cleaner.enable": "true",
    "log.segment.bytes": str(1024 * 1024),
    "log.cleaner.backoff.ms": "1000",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "log.cleaner.min.cleanable.ratio": "0.1",
}

_LOG4J2 = """\
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
# Start-up and the cleaner's work, for the log tail of a failed start or test.
logger.server.name = kafka.server.BrokerServer
logger.server.level = INFO
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
"""

_JVM_OPTS = ["-Xms128m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version the POM pins."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise BrokerError(f"{pom} names no kafka.version")
    return (node.text or "").strip()


@cache
def java_major(java: str = "java") -> int | None:
    """The major version of ``java`` on PATH, or None when there is none."""
    if shutil.which(java) is None:
        return None
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def cache_root() -> Path:
    explicit = os.environ.get("PROFITWATCH_KAFKA_CACHE", "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "profitwatch"


def _classpath_dir(pom: Path) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return cache_root() / f"kafka-{kafka_version(pom)}-{digest}"


def kafka_available(pom: Path = POM) -> bool:
    """Whether this machine can run the broker: Java >= 17 and either the jars in the
    cache already or Maven to resolve them."""
    major = java_major()
    if major is None or major < MIN_JAVA:
        return False
    return (_classpath_dir(pom) / "lib").is_dir() or shutil.which("mvn") is not None


def resolve_classpath(pom: Path = POM, timeout_s: float = 600.0) -> Path:
    """The folder of the broker's jars, resolved with Maven the first time.

    Maven writes into a temporary sibling that is renamed into place when complete, so
    an interrupted or concurrent resolution never leaves a half-filled cache behind.
    """
    target = _classpath_dir(pom)
    lib = target / "lib"
    if lib.is_dir():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Apache Kafka {kafka_version(pom)} is not cached in {target} and there is no "
            "Maven (mvn) to fetch it from Maven Central: install Maven, or use --kind tansu"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'lib'}",
        ]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"Maven did not resolve Kafka in {timeout_s:.0f} s") from exc
        if done.returncode != 0 or not (staging / "lib").is_dir():
            tail = (done.stdout + done.stderr).strip()[-3000:]
            rc = done.returncode
            raise BrokerError(f"Maven could not resolve Apache Kafka (rc={rc}):\n{tail}")
        shutil.copy2(pom, staging / "pom.xml")
        try:
            staging.rename(target)
        except OSError:
            if not lib.is_dir():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return lib


def server_properties(host: str, port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """Every setting of one node listening for clients on ``host:port``."""
    return BROKER_SETTINGS | {
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "log.dirs": str(log_dir),
    }


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_SAFE = re.compile(r"[A-Za-z0-9._-]+")  # JAAS and --add-scram quote nothing: keep it so


@dataclass(frozen=True)
class BrokerSecurity:
    """A broker that wants SASL over TLS on its client port (a test of the service's
    security settings).

    The client listener is SASL_SSL with ``mechanisms`` for ``users`` (name ->
    password): PLAIN users in its JAAS config, SCRAM users written to the metadata log
    when the storage is formatted (``--add-scram``; a kept data dir keeps the users it
    was formatted with). Its certificate and key are PEM (``ssl.keystore.type=PEM``),
    the key unencrypted PKCS#8. With ``client_ca``, clients must also present a
    certificate that CA signed (``ssl.client.auth=required``).

    The controller, inter-broker traffic and the readiness check use PLAINTEXT
    listeners on ``host`` (loopback in tests): a node talking to itself needs no
    credentials, and readiness needs a Metadata answer, which the client listener only
    gives after authentication.
    """

    certificate_chain: str
    private_key: str = field(repr=False)
    users: Mapping[str, str] = field(repr=False)  # name -> password
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-512")
    client_ca: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.mechanisms) - {"PLAIN", *SCRAM_MECHANISMS}
        if unknown or not self.mechanisms:
            raise BrokerError(f"unsupported SASL mechanisms: {sorted(unknown) or 'none'}")
        for name, password in self.users.items():
            if not (_SAFE.fullmatch(name) and _SAFE.fullmatch(password)):
                raise BrokerError(
                    f"SASL user {name!r}: use only [A-Za-z0-9._-] in names and passwords"
                )

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments creating the SCRAM users."""
        return [
            arg
            for mechanism in self.mechanisms
            if mechanism in SCRAM_MECHANISMS
            for name, password in self.users.items()
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]


def secure_properties(
    security: BrokerSecurity, host: str, port: int, internal_port: int, controller_port: int
) -> dict[str, str]:
    """What `server_properties` becomes with ``security``: CLIENT (SASL_SSL) on
    ``port``, INTERNAL (PLAINTEXT) on ``internal_port``."""
    prefix = "listener.name.client."
    props = {
        "listeners": (
            f"CLIENT://{host}:{port},INTERNAL://{host}:{internal_port},"
            f"CONTROLLER://{host}:{controller_port}"
        ),
        "advertised.listeners": f"CLIENT://{host}:{port},INTERNAL://{host}:{internal_port}",
        "listener.security.protocol.map": (
            "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": ",".join(security.mechanisms),
        f"{prefix}sasl.enabled.mechanisms": ",".join(security.mechanisms),
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.certificate.chain": security.certificate_chain.strip(),
        f"{prefix}ssl.keystore.key": security.private_key.strip(),
    }
    for mechanism in security.mechanisms:
        if mechanism == "PLAIN":
            users = " ".join(f'user_{n}="{p}"' for n, p in security.users.items())
            module = f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        else:  # SCRAM: the credentials are in the metadata log, the module needs none
            module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = module
    if security.client_ca is not None:
        props |= {
            f"{prefix}ssl.truststore.type": "PEM",
            f"{prefix}ssl.truststore.certificates": security.client_ca.strip(),
            f"{prefix}ssl.client.auth": "required",
        }
    return props


def _properties_text(props: Mapping[str, str]) -> str:
    """A Java .properties file: a backslash and a line break in a value are escaped
    (PEM certificates are multi-line)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{k}={escape(v)}\n" for k, v in props.items())


class ApacheKafkaBroker(BrokerProcess):
    """One Apache Kafka node on ``host:port`` (a free port when ``port`` is None or 0),
    its controller on another free port.

    ``data_dir`` keeps the logs (and the configs written for the run) across restarts;
    without one a temporary folder is used and removed on ``stop()``. ``security``:
    SASL_SSL on the client port (``BrokerSecurity``).
    """

    name = "kafka"
    stop_grace_s = 20.0  # a clean shutdown flushes logs and writes a checkpoint

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        data_dir: Path | None = None,
        pom: Path = POM,
        security: BrokerSecurity | None = None,
    ) -> None:
        super().__init__(host, port, log_path)
        self.pom = pom
        self.security = security
        self._internal_port: int | None = None
        self._data_dir = data_dir
        self._own_dir: Path | None = None
        self._classpath: Path | None = None
        self._controller_port: int | None = None

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir if self._data_dir is not None else self._own_dir

    @property
    def log_dir(self) -> Path:
        """Where the broker keeps its partitions' segments."""
        if self.data_dir is None:
            raise BrokerError("the kafka broker has no data dir yet: call start() first")
        return self.data_dir / "logs"

    @property
    def version(self) -> str:
        return kafka_version(self.pom)

    def start(self, timeout: float = 90.0) -> Self:
        # Resolving the jars (once, with Maven) is not part of the start's timeout.
        major = java_major()
        if major is None or major < MIN_JAVA:
            raise BrokerError(
                f"Apache Kafka needs Java >= {MIN_JAVA}; found "
                f"{'none' if major is None else major}: install a JDK, or use --kind tansu"
            )
        self._classpath = resolve_classpath(self.pom)
        return super().start(timeout)

    def _prepare(self, port: int) -> None:
        if self.data_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="profitwatch-kafka-"))
        root = self.data_dir
        assert root is not None
        root.mkdir(parents=True, exist_ok=True)
        self._controller_port = self._controller_port_for(root)
        props = server_properties(self.host, port, self._controller_port, self.log_dir)
        if self.security is not None:
            self._internal_port = free_port(self.host)
            props |= secure_properties(
                self.security, self.host, port, self._internal_port, self._controller_port
            )
        (root / "server.properties").write_text(_properties_text(props))
        (root / "log4j2.properties").write_text(_LOG4J2)
        if not (self.log_dir / "meta.properties").exists():
            self._format(root / "server.properties")

    def _controller_port_for(self, root: Path) -> int:
        """The controller's port: the one this data dir used before when it is free (the
        quorum is static, so a kept log is easiest to reopen on its old address)."""
        saved = root / "controller.port"
        with contextlib.suppress(OSError, ValueError):
            port = int(saved.read_text())
            if port_free(self.host, port):
                return port
        port = free_port(self.host)
        saved.write_text(f"{port}\n")
        return port

    def _java(self, main: str, *args: str) -> list[str]:
        assert self._classpath is not None and self.data_dir is not None
        return [
            "java",
            *_JVM_OPTS,
            f"-Dlog4j2.configurationFile=file:{self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self._classpath}/*",
            main,
            *args,
        ]

    def _format(self, config: Path) -> None:
        """KRaft storage: a new cluster id, formatted once per data dir."""
        cmd = self._java("kafka.tools.StorageTool", "format", "-t")
        cmd = [*cmd, _random_cluster_id(), "-c", str(config)]
        if self.security is not None:
            cmd += self.security.scram_arguments()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise BrokerError(f"kafka storage format failed (rc={done.returncode}):\n{tail}")

    def _wait_ready(self, deadline: float) -> None:
        if self.security is None or self._internal_port is None:
            super()._wait_ready(deadline)
            return
        # The client listener refuses Metadata before authentication: the base class's
        # check (the broker answers and advertises the port asked) runs against the
        # PLAINTEXT internal listener, which Kafka opens together with the client's.
        with self._probing(self._internal_port):
            super()._wait_ready(deadline)

    @contextlib.contextmanager
    def _probing(self, port: int) -> Iterator[None]:
        client_port, self._port = self._port, port
        try:
            yield
        finally:
            self._port = client_port

    def _command(self, port: int) -> tuple[Sequence[str], dict[str, str]]:
        assert self.data_dir is not None
        return self._java("kafka.Kafka", str(self.data_dir / "server.properties")), dict(os.environ)

    def _cleanup(self) -> None:
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None


def _random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
    ``kafka-storage.sh random-uuid`` prints), without starting a JVM for it."""
    while True:  # Kafka's own generator skips ids that start with "-" (they read as flags)
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
