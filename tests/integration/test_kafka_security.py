"""The service on a cluster that wants authentication: Apache Kafka with a SASL_SSL
client listener (PLAIN and SCRAM-SHA-512 users, client certificates required) and a
CA this test makes (tests/integration/pki.py).

- a real `profitwatch worker` starts on it and processes records produced with the
  same settings (`streams.topics.ensure_topics`, `streams.produce.send_all`); its alerts
  and snapshots, read back with `streams.tail.tail`, are replay's; its log has neither
  the password nor a payload;
- a wrong password ends the start, saying so, before Faust's Ready;
- a PLAINTEXT client (and a TLS client without a certificate) gets nothing from the port.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from models.settings import Settings
from streams.apache_kafka import ApacheKafkaBroker, BrokerSecurity, kafka_available
from streams.broker_process import ClosedByBroker, SaslLogin, metadata_brokers
from streams.kafka_security import kafka_python_config, ssl_context
from streams.produce import send_all, to_kafka
from streams.tail import tail
from streams.topics import ensure_topics
from tests.integration.expectations import Expected
from tests.integration.flow import renamed
from tests.integration.pki import Pki, make_pki
from tests.integration.worker import READY, WorkerProcess, service_env, settings_from

pytestmark = [
    pytest.mark.skipif(
        not kafka_available(), reason="Apache Kafka needs Java >= 17 and Maven (or its jars)"
    ),
    # The module's broker starts in the first test's time (about 20 s).
    pytest.mark.timeout(90),
]

USER = "alice"
PASSWORD = f"pw-{secrets.token_hex(12)}"  # distinctive: searched for in the logs
EXAMPLE = Path(__file__).parents[1] / "data" / "spec" / "example-c1.events.jsonl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_kafka(pki: Pki) -> Iterator[ApacheKafkaBroker]:
    security = BrokerSecurity(
        certificate_chain=pki.broker_cert_pem,
        private_key=pki.broker_key_pem,
        users={USER: PASSWORD},
        mechanisms=("PLAIN", "SCRAM-SHA-512"),
        client_ca=pki.ca_pem,
    )
    broker = ApacheKafkaBroker(security=security)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def secure_env(
    broker: ApacheKafkaBroker,
    pki: Pki,
    unique: str,
    data_dir: Path,
    *,
    mechanism: str = "SCRAM-SHA-512",
    password: str = PASSWORD,
) -> dict[str, str]:
    return service_env(broker.bootstrap, "kafka", unique, data_dir) | {
        "PROFITWATCH_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PROFITWATCH_KAFKA__SASL_MECHANISM": mechanism,
        "PROFITWATCH_KAFKA__SASL_USERNAME": USER,
        "PROFITWATCH_KAFKA__SASL_PASSWORD": password,
        "PROFITWATCH_KAFKA__SSL_CAFILE": str(pki.ca_file),
        "PROFITWATCH_KAFKA__SSL_CERTFILE": str(pki.client_cert_file),
        "PROFITWATCH_KAFKA__SSL_KEYFILE": str(pki.client_key_file),
    }


def example_records(customer_id: str, marker: str, settings: Settings) -> list[dict[str, Any]]:
    """The spec's example c-1 (an at_risk and a became_unprofitable alert, a dead
    letter) as ``customer_id`` on this test's topics; ``marker`` in an order's field
    and in the malformed record's bytes, to look for in the log."""
    records = []
    for line in EXAMPLE.read_text().splitlines():
        rec = json.loads(line)
        if isinstance(rec["value"], dict):
            rec["value"]["customer_id"] = customer_id
            if rec["topic"] == "orders":
                rec["value"]["order_id"] = marker
        else:
            rec["value"] = f"{rec['value']} {marker}"
        records.append(rec)
    return renamed(records, settings)


def read_back(
    settings: Settings, customer: str, capsys: pytest.CaptureFixture[str]
) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """`profitwatch tail --from-beginning` over the alerts and snapshots: the
    customer's alerts (kind, id; each once: a redelivered trigger re-sends its alert
    with the same id) and its latest snapshot."""
    capsys.readouterr()
    topics = [settings.topics.alerts, settings.topics.snapshots]
    tail(settings, topics, from_beginning=True, idle_timeout_s=1.0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    alerts: list[tuple[str, str]] = []
    snapshot = None
    for line in lines:
        if line["key"] != customer:
            continue
        if line["topic"] == settings.topics.snapshots:
            snapshot = line["value"]
        elif (alert := (line["value"]["kind"], line["value"]["alert_id"])) not in alerts:
            alerts.append(alert)
    return alerts, snapshot


def test_a_worker_on_sasl_ssl_processes_records_and_logs_no_secret_or_payload(
    secure_kafka: ApacheKafkaBroker,
    pki: Pki,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = secure_env(secure_kafka, pki, unique, tmp_path / "data")
    settings = settings_from(env)
    customer, marker = f"cust-{unique}-secure", f"order-{unique}-marker"
    records = example_records(customer, marker, settings)
    expected = Expected(settings).phase(records)
    want_alerts = [(a["kind"], a["alert_id"]) for a in expected.alerts[customer]]
    assert [k for k, _ in want_alerts] == ["at_risk", "became_unprofitable"]
    applied = expected.figures()[customer]["events_applied"]

    # All records on the broker before the worker starts, as replay assumes (a live
    # interleaving across topics may apply them in another order).
    ensure_topics(settings)
    sent = send_all(
        settings.kafka_bootstrap_servers, (to_kafka(r) for r in records), security=settings.kafka
    )
    assert sent == len(records)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.start(timeout_s=60)  # the probe, its admin client and Faust: all SASL_SSL
        deadline = time.monotonic() + 30
        while True:  # a snapshot per commit: the latest has every event
            alerts, snapshot = read_back(settings, customer, capsys)
            done = alerts == want_alerts and (snapshot or {}).get("events_applied") == applied
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert alerts == want_alerts
        assert snapshot is not None and snapshot["events_applied"] == applied, snapshot
        assert snapshot["status"] == "unprofitable"
        # The malformed record reached the worker too: dead-lettered, marker and all.
        capsys.readouterr()
        tail(settings, [settings.topics.dlq], from_beginning=True, max_records=1, idle_timeout_s=10)
        assert marker in capsys.readouterr().out
    finally:
        worker.stop()
    log = worker.log_text()
    assert READY in log
    assert f"connecting with SASL_SSL (SCRAM-SHA-512 as '{USER}')" in log
    assert PASSWORD not in log
    # Records pass through at info level without a trace: no customer id, no field
    # value, not even of the malformed record that was dead-lettered.
    assert customer not in log and marker not in log, log[-3000:]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_a_wrong_password_ends_the_start_saying_so(
    secure_kafka: ApacheKafkaBroker, pki: Pki, unique: str, tmp_path: Path, mechanism: str
) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    env = secure_env(
        secure_kafka, pki, unique, tmp_path / "data", mechanism=mechanism, password=wrong
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.spawn()
        assert worker.proc is not None
        assert worker.proc.wait(30) == 2  # a ProfitwatchError: its message, exit 2
    finally:
        worker.stop()
    out = worker.output()
    assert (
        f"Kafka at {secure_kafka.bootstrap} refused the login with SASL_SSL "
        f"({mechanism} as '{USER}'): Authentication failed" in out
    ), out
    assert READY not in out and "Traceback" not in out
    assert wrong not in out and PASSWORD not in out


def test_a_plaintext_client_gets_nothing_from_the_sasl_ssl_port(
    secure_kafka: ApacheKafkaBroker, pki: Pki, unique: str, tmp_path: Path
) -> None:
    host, port = secure_kafka.host, secure_kafka.port
    assert port is not None
    with pytest.raises(ClosedByBroker):  # TLS expected: the broker hangs up
        metadata_brokers(host, port, 5.0)
    admin_started = time.monotonic()
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=secure_kafka.bootstrap, bootstrap_timeout_ms=3000)
    assert time.monotonic() - admin_started < 20

    # TLS and the right password, but no client certificate: refused too.
    no_cert = ssl.create_default_context(cafile=str(pki.ca_file))
    login = SaslLogin("PLAIN", USER, PASSWORD)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        metadata_brokers(host, port, 5.0, ssl_context=no_cert, sasl=login)

    # Everything the settings give: the broker answers, advertising the SASL_SSL port.
    settings = settings_from(secure_env(secure_kafka, pki, unique, tmp_path / "data"))
    context = ssl_context(settings.kafka)
    brokers = metadata_brokers(host, port, 5.0, ssl_context=context, sasl=login)
    assert (1, host, port) in brokers
    assert kafka_python_config(settings.kafka)["ssl_context"] is context  # one context

    # A worker left on PLAINTEXT says what is wrong and, told to give up, exits.
    env = service_env(secure_kafka.bootstrap, "kafka", unique, tmp_path / "data")
    env["PROFITWATCH_BROKER_WAIT_SECONDS"] = "2"
    rc, out = WorkerProcess(env, tmp_path / "plaintext.log").run_to_exit(30)
    assert rc == 2, out
    assert "does it want TLS or SASL? (kafka.security_protocol is PLAINTEXT)" in out, out
    assert READY not in out
