"""`profitwatch notify webhook` as a process, on the session's broker, against a local
HTTP receiver that misbehaves on purpose: every alert is delivered, signed, in order
per customer; what cannot be delivered is dead-lettered with its reason; a 410 Gone
stops the notifier with exit code 3 and leaves its alert uncommitted."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts.webhooks import new_secret, verify
from models.replay import Replayer
from models.settings import Settings
from streams.broker_process import free_port
from tests.integration.cli_process import CliProcess
from tests.integration.expectations import metric_samples
from tests.integration.flow import stream
from tests.kafka_helpers import (
    Sent,
    committed_offsets,
    create_topics,
    produce,
    read_topic,
    wait_until_consumed,
)

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 0.5  # the notifier's request timeout here; slow answers take longer
SLOW_S = TIMEOUT_S + 0.4


def realistic_alerts(customers: int, seed: int) -> list[tuple[str, bytes]]:
    """(customer id, value bytes) of the alerts the engine makes of a generated year,
    in the order it makes them, serialised as the worker does."""
    settings = Settings()
    lines = [json.dumps(r, default=str).encode() for r in stream(customers, 365, seed)]
    out: list[tuple[str, bytes]] = []
    for _, outputs in Replayer(settings).replay_lines(lines):
        for rec in outputs:
            if rec.topic == settings.topics.alerts:
                value = json.dumps(rec.value, separators=(",", ":"), ensure_ascii=False)
                out.append((rec.value["customer_id"], value.encode("utf-8")))
    return out


# --- the receiver ---

Answer = int | tuple[int, dict[str, str]] | float  # a status; with headers; sleep seconds


@dataclass(frozen=True)
class Hit:
    webhook_id: str
    alert_id: str
    customer_id: str
    body: bytes
    error: str | None  # verify()'s refusal, None when the signature is valid
    answered: int  # the status sent back; 0 when it slept past the client's timeout


class Receiver:
    """A CRM endpoint on 127.0.0.1: `script(alert index, attempt from 0)` says what to
    answer each request; every request is recorded with its verification."""

    def __init__(self, secret: str, order: list[str], script: Callable[[int, int], Answer]):
        self.secret = secret
        self.index = {alert_id: i for i, alert_id in enumerate(order)}
        self.script = script
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True  # sleepers must not hold up the shutdown
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/crm/alerts?token=t0k3n"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def delivered(self) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if 200 <= h.answered < 300]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                error: str | None = None
                try:
                    verify(receiver.secret, self.headers, body)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                doc = json.loads(body)
                with receiver.lock:
                    webhook_id = self.headers.get("webhook-id", "")
                    attempt = sum(1 for h in receiver.hits if h.webhook_id == webhook_id)
                    answer = receiver.script(receiver.index.get(doc["alert_id"], -1), attempt)
                    headers: dict[str, str] = {}
                    if error is not None:
                        status = 401  # a forged request is refused, as a CRM would
                    elif isinstance(answer, float):
                        status = 503  # after the sleep: the client has given up by then
                    elif isinstance(answer, tuple):
                        status, headers = answer
                    else:
                        status = answer
                    receiver.hits.append(
                        Hit(
                            webhook_id,
                            doc["alert_id"],
                            doc["customer_id"],
                            body,
                            error,
                            0 if isinstance(answer, float) and error is None else status,
                        )
                    )
                if isinstance(answer, float) and error is None:
                    time.sleep(answer)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up on a slow answer

        return Handler


# --- the notifier process ---


def _notify(url: str) -> list[str]:
    return ["notify", "webhook", "--url", url]


@dataclass
class Setup:
    env: dict[str, str]
    settings: Settings
    secret: str
    group: str


@pytest.fixture
def setup(kafka_bootstrap: str, broker_kind: str, unique: str) -> Setup:
    secret = new_secret()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROFITWATCH_BROKER_KIND": "tansu" if broker_kind == "tansu" else "kafka",
        "PROFITWATCH_APP_ID": f"pw-{unique}",
        "PROFITWATCH_TOPICS__ALERTS": f"profitability-alerts-{unique}",
        # the secret by env, as the README says to; never on the command line
        "PROFITWATCH_WEBHOOK__SECRET": secret,
        "PROFITWATCH_WEBHOOK__ATTEMPTS": "3",
        "PROFITWATCH_WEBHOOK__BACKOFF_BASE_SECONDS": "0.05",
        "PROFITWATCH_WEBHOOK__BACKOFF_CAP_SECONDS": "0.2",
        "PROFITWATCH_WEBHOOK__TIMEOUT_SECONDS": str(TIMEOUT_S),
        "PROFITWATCH_WEBHOOK__UNDELIVERABLE_TOPIC": f"alerts-undeliverable-{unique}",
    }
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        app_id=f"pw-{unique}",
        topics={"alerts": env["PROFITWATCH_TOPICS__ALERTS"]},
    )
    return Setup(env, settings, secret, f"pw-{unique}-notify-webhook")


def _produce(bootstrap: str, topic: str, alerts: list[tuple[str, bytes]]) -> list[Sent]:
    return produce(bootstrap, [(topic, cid.encode(), value, None) for cid, value in alerts])


@pytest.fixture
def processes() -> Iterator[list[CliProcess]]:
    started: list[CliProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()
        for p in started:
            assert p.proc is None or p.proc.poll() is not None, "notifier left running"


def test_every_alert_is_delivered_signed_and_in_order_through_failures_and_a_restart(
    kafka_bootstrap: str, setup: Setup, processes: list[CliProcess], tmp_path: Path
) -> None:
    alerts = realistic_alerts(15, 5)
    assert len(alerts) >= 20
    ids = [json.loads(v)["alert_id"] for _, v in alerts]
    rejected, exhausted, limited = 5, 9, 12

    def script(i: int, attempt: int) -> Answer:
        if i == rejected:
            return 404  # never retried: dead-lettered at once
        if i == exhausted:
            return 500  # every attempt fails: dead-lettered after the last one
        if i == limited and attempt == 0:
            return (429, {"retry-after": "1"})
        if i % 7 == 1 and attempt == 0:
            return 500
        if i % 7 == 3 and attempt == 0:
            return SLOW_S  # past the notifier's timeout
        return 200

    topic = setup.settings.topics.alerts
    create_topics(kafka_bootstrap, [topic], partitions=4)
    began = time.time()
    half = len(alerts) // 2
    sent = _produce(kafka_bootstrap, topic, alerts[:half])

    with Receiver(setup.secret, ids, script) as crm:
        first = CliProcess(setup.env, _notify(crm.url), tmp_path / "notify.log")
        processes.append(first.start())
        # Stopped mid-stream (SIGTERM): it exits 0, and the next one resumes where it
        # committed, without sending an alert twice.
        first.wait_for("half the alerts", lambda: len(crm.delivered()) >= half // 2, 30)
        assert first.terminate() == 0, first.output()
        assert "notify webhook stopped" in first.output()

        sent += _produce(kafka_bootstrap, topic, alerts[half:])
        metrics_port = free_port()
        env = setup.env | {"PROFITWATCH_WEBHOOK__METRICS_PORT": str(metrics_port)}
        second = CliProcess(env, _notify(crm.url), tmp_path / "notify.log")
        processes.append(second.start())
        want = len(ids) - 2
        second.wait_for("every alert", lambda: len(crm.delivered()) >= want, 40)
        wait_until_consumed(kafka_bootstrap, setup.group, [topic], 4, timeout_s=20)
        letters = read_topic(
            kafka_bootstrap, setup.env["PROFITWATCH_WEBHOOK__UNDELIVERABLE_TOPIC"], expected=2
        )
        scraped = metric_samples(metrics_port)  # idle now: its counts are final
        assert second.terminate() == 0, second.output()
        hits = list(crm.hits)

    output = first.output() + second.output()
    assert setup.secret.removeprefix("whsec_") not in output  # never logged
    assert "t0k3n" not in output  # nor the URL's query

    # Every request was signed right, its webhook-id the alert's id.
    assert [h.error for h in hits if h.error] == []
    assert all(h.webhook_id == h.alert_id for h in hits)
    # Duplicates (retries) only with the same webhook-id: one body per id.
    bodies: dict[str, set[bytes]] = {}
    for h in hits:
        bodies.setdefault(h.webhook_id, set()).add(h.body)
    assert all(len(b) == 1 for b in bodies.values())
    assert {w: b.pop() for w, b in bodies.items()} == {ids[i]: v for i, (_, v) in enumerate(alerts)}

    # None lost: every alert delivered once, but the two given up on.
    delivered = [h.alert_id for h in hits if 200 <= h.answered < 300]
    assert sorted(delivered) == sorted(set(ids) - {ids[rejected], ids[exhausted]})
    # The failures happened as scripted, and were retried.
    attempts = {i: sum(1 for h in hits if h.alert_id == a) for i, a in enumerate(ids)}
    assert attempts[rejected] == 1 and attempts[exhausted] == 3
    assert attempts[limited] >= 2 and all(
        attempts[i] >= 2 for i in range(len(ids)) if i % 7 in (1, 3)
    )

    # In order per customer: the alerts a customer's requests carry, retries folded,
    # are the customer's alerts in the order they were produced.
    for customer in {cid for cid, _ in alerts}:
        seen: list[str] = []
        for h in hits:
            if h.customer_id == customer and (not seen or seen[-1] != h.alert_id):
                seen.append(h.alert_id)
        assert seen == [ids[i] for i, (cid, _) in enumerate(alerts) if cid == customer]

    # The metrics of the second notifier, with the first's stop line, add up to what the
    # endpoint saw: each alert settled once, by one of them.
    stopped = re.search(r"notify webhook stopped: (\d+) delivered, (\d+) dead-lettered", output)
    assert stopped, first.output()
    first_delivered, first_dead = map(int, stopped.groups())
    outcome = {
        dict(labels)["outcome"]: v
        for (name, labels), v in scraped.items()
        if name == "profitwatch_webhook_alerts_total"
    }
    assert outcome["delivered"] + first_delivered == len(delivered)
    assert outcome["rejected"] + outcome["exhausted"] + first_dead == 2
    assert outcome["invalid_alert"] == 0
    settled = sum(outcome.values())
    assert scraped[("profitwatch_webhook_attempts_total", ())] >= settled > 0
    last = scraped[("profitwatch_webhook_last_delivered_timestamp_seconds", ())]
    assert began <= last <= time.time()

    # The two given up on are on the undeliverable topic, as they were, with the reason.
    by_id = {json.loads(r.value or b"{}")["alert_id"]: r for r in letters}
    assert set(by_id) == {ids[rejected], ids[exhausted]}
    for i, reason, status, tries in (
        (rejected, b"rejected", b"404", b"1"),
        (exhausted, b"exhausted", b"500", b"3"),
    ):
        letter = by_id[ids[i]]
        headers = dict(letter.headers)
        assert letter.value == alerts[i][1] and letter.key == alerts[i][0].encode()
        assert headers["__streams.errors.exception"] == reason
        assert status in headers["__streams.errors.message"]
        assert headers["profitwatch.webhook.status"] == status
        assert headers["profitwatch.webhook.attempts"] == tries
        assert headers["__streams.errors.topic"] == topic.encode()
        assert headers["__streams.errors.partition"] == str(sent[i].partition).encode()
        assert headers["__streams.errors.offset"] == str(sent[i].offset).encode()


def test_410_gone_stops_the_notifier_with_exit_code_3_and_commits_nothing_after_it(
    kafka_bootstrap: str, setup: Setup, processes: list[CliProcess], tmp_path: Path
) -> None:
    alerts = realistic_alerts(10, 3)[:10]
    ids = [json.loads(v)["alert_id"] for _, v in alerts]
    gone_at = 4
    topic = setup.settings.topics.alerts
    env = setup.env | {"PROFITWATCH_PARTITIONS": "1"}  # one partition: a total order
    create_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, alerts)

    with Receiver(setup.secret, ids, lambda i, _: 410 if i >= gone_at else 200) as crm:
        notifier = CliProcess(env, _notify(crm.url), tmp_path / "notify.log")
        processes.append(notifier.start())
        assert notifier.proc is not None
        rc = notifier.proc.wait(40)
        hits = list(crm.hits)

    out = notifier.output()
    assert rc == 3, out
    assert "410 Gone" in out and ids[gone_at] in out and "Traceback" not in out
    assert [h.alert_id for h in hits] == ids[: gone_at + 1]  # none tried after the 410
    assert [h.answered for h in hits] == [200] * gone_at + [410]
    # The 410's alert and every later one are not committed: a new run sends them.
    assert committed_offsets(kafka_bootstrap, setup.group) == {(topic, 0): gone_at}
    undeliverable = env["PROFITWATCH_WEBHOOK__UNDELIVERABLE_TOPIC"]
    assert read_topic(kafka_bootstrap, undeliverable, idle_s=1.0, timeout_s=5.0) == []
