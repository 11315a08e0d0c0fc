"""`profitwatch notify alertmanager` as a process, on the session's broker, against a
real Prometheus Alertmanager (Debian's `prometheus-alertmanager`; `make test`
installs it): Alertmanager shows exactly the customers whose final status is at risk
or unprofitable, with their labels and annotations; again after Alertmanager restarts
with nothing (within the re-send interval); unchanged across a restart of the
notifier; and a customer that recovers, or moves from at risk to unprofitable, has its
old alert resolved at once, not left to expire. A change made while Alertmanager is
down is not committed until it is delivered.

The outputs are the engine's (models/replay.py) over a generated year, produced as the
worker sends them: each alert at once, the snapshots of the customers that changed at
each "commit" (every COMMIT_RECORDS records), so the notifier sees the same
interleaving of the two topics a worker would give it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.alertmanager import View, alertname_of, customer_page
from models.outputs import Snapshot
from models.replay import Replayer
from models.settings import Settings
from streams.broker_process import free_port
from tests.integration.cli_process import CliProcess
from tests.integration.expectations import metric_samples
from tests.integration.flow import stream
from tests.kafka_helpers import Sent, committed_offsets, create_topics, produce, wait_until_consumed

pytestmark = pytest.mark.timeout(150)

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
RESEND_S = 2.0
VALID_FOR = 4  # intervals: an alert not re-sent resolves by itself after 8 s here
COMMIT_RECORDS = 100
DASHBOARD = "http://127.0.0.1:6066"
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


def alertmanager_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "prometheus-alertmanager is not installed: `make test` installs it "
        "(`make install`), or `sudo apt-get install prometheus-alertmanager` "
        "(an upstream `alertmanager` binary on PATH works too)",
        pytrace=False,
    )


def _get(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.loads(r.read() or b"null")


class Alertmanager:
    """One Alertmanager on 127.0.0.1, clustering off, its storage in `root`; each start
    has a fresh storage dir (alerts are only ever in its memory anyway)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        (root / "alertmanager.yml").write_text(CONFIG)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        self.starts += 1
        storage = self.root / f"storage-{self.starts}"
        storage.mkdir()
        with (self.root / "alertmanager.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.root / 'alertmanager.yml'}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # no gossip, no second port
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"alertmanager not ready: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.root / "alertmanager.log").read_text("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL by pid: a crash, everything it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def active(self) -> dict[str, dict[str, Any]]:
        """customer -> its active alert (one at most: two would be a failure)."""
        got = _get(f"{self.url}/api/v2/alerts?active=true&silenced=false&inhibited=false")
        out: dict[str, dict[str, Any]] = {}
        for a in got:
            cid = a["labels"]["customer_id"]
            assert cid not in out, f"two active alerts for {cid}: {out[cid]}, {a}"
            out[cid] = a
        return out


@pytest.fixture
def processes() -> Iterator[list[Alertmanager | CliProcess]]:
    started: list[Alertmanager | CliProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill() if isinstance(p, CliProcess) else p.stop()
        for p in started:
            assert p.proc is None or p.proc.poll() is not None, "process left running"


# --- the data: the engine's outputs, sent as a worker sends them ---


def _wire(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Service:
    """The engine over a generated stream, its outputs in the worker's order."""

    def __init__(self, customers: int, seed: int) -> None:
        self.settings = Settings()
        self.r = Replayer(self.settings)
        self.records = stream(customers, 365, seed)
        self.sent_snapshot: dict[str, bytes] = {}
        self.latest_alert: dict[str, dict[str, Any]] = {}
        self.passed_through: set[str] = set()  # customers that went at_risk -> unprofitable
        self.n = 0

    def outputs(self) -> list[tuple[str, str, bytes]]:
        """("alert" | "snapshot", customer, value) of the whole stream."""
        lines = [json.dumps(x, default=str).encode() for x in self.records]
        out: list[tuple[str, str, bytes]] = []
        for _, produced in self.r.replay_lines(lines):
            out += self._alerts(produced)
            self.n += 1
            if self.n % COMMIT_RECORDS == 0:
                out += self._commit()
        return out + self._commit()

    def _alerts(self, produced: list[Any]) -> list[tuple[str, str, bytes]]:
        out = []
        for o in produced:
            if o.topic == self.settings.topics.alerts:
                cid = o.value["customer_id"]
                self.latest_alert[cid] = o.value
                if (o.value["previous_status"], o.value["status"]) == ("at_risk", "unprofitable"):
                    self.passed_through.add(cid)
                out.append(("alert", cid, _wire(o.value)))
        return out

    def _commit(self) -> list[tuple[str, str, bytes]]:
        out = []
        for cid in sorted(self.r.states):
            state = self.r.states[cid]
            if not state.has_own_events:
                continue
            value = _wire(self.r.model.snapshot(state).to_wire())
            if self.sent_snapshot.get(cid) != value:
                self.sent_snapshot[cid] = value
                out.append(("snapshot", cid, value))
        return out

    def snapshot(self, cid: str) -> Snapshot:
        return self.r.model.snapshot(self.r.states[cid])

    def order(self, cid: str, days: float, revenue: str, cost: str) -> list[tuple[str, str, bytes]]:
        """An order of `cid`, `days` after its as_of, applied now: its alert and, at
        once (a commit), its snapshot."""
        self.n += 1
        at = datetime.fromisoformat(self.snapshot(cid).as_of) + timedelta(days=days)
        order = {
            "event_id": f"ev-am-{self.n}",
            "customer_id": cid,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "currency": self.settings.reporting_currency,
            "order_id": f"{cid}-am-{self.n}",
            "revenue": revenue,
            "cost_of_goods": cost,
        }
        out = self._alerts(self.r.feed(self.settings.topics.orders, order))
        return out + self._commit()

    def statuses(self) -> dict[str, str]:
        return {
            cid: self.r.model.snapshot(s).status
            for cid, s in self.r.states.items()
            if s.has_own_events
        }

    def firing(self) -> dict[str, str]:
        """customer -> alertname, from replay's final statuses."""
        return {c: n for c, s in self.statuses().items() if (n := alertname_of(s)) is not None}


# --- the checks ---


def wait_until(what: str, check: Callable[[], str | None], timeout_s: float, *procs: Any) -> float:
    """Until `check()` says nothing is wrong (None); returns the seconds it took."""
    started = time.monotonic()
    wrong: str | None = "not checked"
    while time.monotonic() - started < timeout_s:
        for p in procs:
            p.alive()
        try:
            wrong = check()
        except OSError as exc:
            wrong = repr(exc)
        if wrong is None:
            return time.monotonic() - started
        time.sleep(0.1)
    tail = "".join(f"\n--- {type(p).__name__} ---\n{p.output()[-3000:]}" for p in procs)
    raise AssertionError(f"no {what} in {timeout_s} s: {wrong}{tail}")


def differences(
    am: Alertmanager, service: Service, *, words: Callable[[str], tuple[str, str]]
) -> str | None:
    """What differs between Alertmanager's active alerts and replay's final statuses
    (labels and annotations); None when nothing does. `words(customer)` are the
    summary and drivers the alert should carry."""
    active = am.active()
    want = service.firing()
    if set(active) != set(want):
        return f"customers {sorted(active)} active, {sorted(want)} wanted"
    for cid, name in want.items():
        a = active[cid]
        snap = service.snapshot(cid)
        severity = "critical" if name == "CustomerUnprofitable" else "warning"
        labels = {"alertname": name, "customer_id": cid, "severity": severity}
        if a["labels"] != labels:
            return f"{cid}: labels {a['labels']}, wanted {labels}"
        summary, drivers = words(cid)
        annotations = {
            "summary": summary,
            "drivers": drivers,
            "trailing_net_profit": f"{snap.trailing.net_profit} EUR",
            "referral_value_at_stake": f"{snap.trailing.referral_value} EUR",
            "as_of": snap.as_of,
        }
        if a["annotations"] != annotations:
            return f"{cid}: annotations {a['annotations']}, wanted {annotations}"
        if a["generatorURL"] != customer_page(DASHBOARD, cid):
            return f"{cid}: generatorURL {a['generatorURL']}"
        if a["status"]["state"] != "active":
            return f"{cid}: {a['status']}"
    return None


def test_alertmanager_shows_exactly_the_customers_at_risk_or_unprofitable_through_restarts(
    kafka_bootstrap: str,
    broker_kind: str,
    unique: str,
    tmp_path: Path,
    processes: list[Alertmanager | CliProcess],
) -> None:
    binary = alertmanager_binary()  # fails, not skips, without it
    began = time.monotonic()
    service = Service(25, 3)
    outputs = service.outputs()
    statuses = service.statuses()
    assert {"profitable", "at_risk", "unprofitable"} <= set(statuses.values()), statuses
    assert service.passed_through, "no customer went from at risk to unprofitable"

    alerts_topic, snapshots_topic = f"alerts-{unique}", f"snapshots-{unique}"
    create_topics(kafka_bootstrap, [alerts_topic], partitions=4)
    create_topics(
        kafka_bootstrap, [snapshots_topic], partitions=4, configs={"cleanup.policy": "compact"}
    )
    topic = {"alert": alerts_topic, "snapshot": snapshots_topic}

    def send(records: list[tuple[str, str, bytes]]) -> list[Sent]:
        return produce(
            kafka_bootstrap, [(topic[kind], cid.encode(), v, None) for kind, cid, v in records]
        )

    (tmp_path / "alertmanager").mkdir()
    am = Alertmanager(binary, tmp_path / "alertmanager")
    processes.append(am.start())
    group = f"pw-{unique}-notify-alertmanager"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROFITWATCH_BROKER_KIND": "tansu" if broker_kind == "tansu" else "kafka",
        "PROFITWATCH_APP_ID": f"pw-{unique}",
        "PROFITWATCH_TOPICS__ALERTS": alerts_topic,
        "PROFITWATCH_TOPICS__SNAPSHOTS": snapshots_topic,
        "PROFITWATCH_ALERTMANAGER__BACKOFF_BASE_SECONDS": "0.1",
        "PROFITWATCH_ALERTMANAGER__BACKOFF_CAP_SECONDS": "0.5",
        "PROFITWATCH_ALERTMANAGER__TIMEOUT_SECONDS": "2",
    }
    args = [
        "--url",
        am.url,
        "--dashboard-url",
        DASHBOARD,
        "--resend-interval",
        str(RESEND_S),
        "--valid-for-intervals",
        str(VALID_FOR),
    ]
    log_path = tmp_path / "notify.log"

    def alerts_words(cid: str) -> tuple[str, str]:
        """The customer's latest alert's summary and drivers (readable)."""
        a = service.latest_alert[cid]
        drivers = ", ".join(
            f"{d['component'].replace('_', ' ')} {d['amount']} EUR ({round(d['share'] * 100)}%)"
            for d in a["drivers"]
        )
        return a["summary"], drivers or "no costs in the window"

    def snapshot_words(cid: str) -> tuple[str, str]:
        view = View.of(service.snapshot(cid), "EUR")
        assert view is not None
        return view.summary, view.drivers

    # --- A: half the stream before the notifier starts, half while it runs ---
    half = len(outputs) // 2
    send(outputs[:half])
    metrics_port = free_port()
    first_env = env | {"PROFITWATCH_ALERTMANAGER__METRICS_PORT": str(metrics_port)}
    first = CliProcess(first_env, ["notify", "alertmanager", *args], log_path)
    processes.append(first.start())
    wait_until(
        "the notifier to read the snapshots",
        lambda: None if f"read {snapshots_topic}" in first.output() else "not yet",
        30,
        first,
    )
    send(outputs[half:])  # live, while it runs
    wait_until(
        "alerts of the final statuses",
        lambda: differences(am, service, words=alerts_words),
        40,
        first,
    )
    wait_until_consumed(kafka_bootstrap, group, [alerts_topic, snapshots_topic], 4, timeout_s=20)

    # --- B: Alertmanager crashes; a customer recovers meanwhile ---
    unprofitable = sorted(c for c, s in statuses.items() if s == "unprofitable")
    x, z = unprofitable[0], unprofitable[1]
    am.kill()
    recovery = service.order(x, 1, "100000.00", "0.00")
    assert service.snapshot(x).status == "profitable"
    sent = send(recovery)
    x_snapshot = next(
        s for s, (kind, _, _) in zip(sent, recovery, strict=True) if kind == "snapshot"
    )
    wait_until(
        f"an attempt to resolve {x}",
        lambda: None if f"{x} resolved" in first.output() else "not tried",
        15,
        first,
    )
    time.sleep(RESEND_S)  # more attempts fail meanwhile
    committed = committed_offsets(kafka_bootstrap, group)
    assert committed[(snapshots_topic, x_snapshot.partition)] <= x_snapshot.offset, (
        "committed past a change Alertmanager never got"
    )
    am.start()  # nothing in it
    took = wait_until(
        "the alerts again after Alertmanager's restart",
        lambda: differences(am, service, words=alerts_words),
        RESEND_S + 3,
        first,
    )
    assert took <= RESEND_S + 1.5, f"{took:.1f} s to come back"
    wait_until_consumed(kafka_bootstrap, group, [alerts_topic, snapshots_topic], 4, timeout_s=20)

    # Its metrics say what happened: POSTs refused while Alertmanager was down, then
    # delivered; as many alerts firing as Alertmanager has active.
    def posts() -> dict[str, float]:
        return {
            dict(labels)["result"]: v
            for (name, labels), v in metric_samples(metrics_port).items()
            if name == "profitwatch_alertmanager_posts_total"
        }

    got = posts()
    assert got["retry"] >= 2 and got["delivered"] >= 2 and got["refused"] == 0, got
    active = len(am.active())
    wait_until(
        f"{active} firing in the metrics",
        lambda: (
            None
            if metric_samples(metrics_port)[("profitwatch_alertmanager_firing_alerts", ())]
            == active
            else "not yet"
        ),
        2 * RESEND_S + 1,
        first,
    )
    samples = metric_samples(metrics_port)
    assert samples[("profitwatch_alertmanager_changes_total", ())] >= active > 0
    assert samples[("profitwatch_alertmanager_invalid_records_total", ())] == 0

    # --- C: the notifier restarts; Alertmanager's active alerts do not change ---
    before = am.active()
    assert first.terminate() == 0, first.output()
    assert "notify alertmanager stopped" in first.output()
    down = time.monotonic()
    while time.monotonic() - down < 1.0:  # nobody re-sends: still all there
        assert set(am.active()) == set(before)
        time.sleep(0.1)
    second = CliProcess(env, ["notify", "alertmanager", *args], log_path)
    processes.append(second.start())
    wait_until(
        "the second notifier to read the snapshots",
        lambda: None if f"read {snapshots_topic}" in second.output() else "not yet",
        30,
        second,
    )
    # Its alerts were committed: the words are the snapshots' now, the rest the same.
    wait_until(
        "the annotations of the snapshots",
        lambda: differences(am, service, words=snapshot_words),
        RESEND_S + 3,
        second,
    )
    watched = time.monotonic()
    while time.monotonic() - watched < 2 * RESEND_S:
        second.alive()
        assert differences(am, service, words=snapshot_words) is None
        time.sleep(0.2)
    out = second.output()
    assert "changes to deliver" in out and " 0 changes to deliver" in out, out[-2000:]

    # --- D: while everything runs: a recovery, and a customer getting worse ---
    def ends_at(cid: str) -> datetime:
        return datetime.fromisoformat(am.active()[cid]["endsAt"].replace("Z", "+00:00"))

    z_ends = ends_at(z)
    send(service.order(z, 1, "100000.00", "0.00"))
    assert service.snapshot(z).status == "profitable"
    wait_until(f"{z} resolved", lambda: None if z not in am.active() else "active", 5, second)
    assert datetime.now(z_ends.tzinfo) < z_ends, "expired, not resolved"

    w = sorted(c for c, s in statuses.items() if s == "profitable")[0]

    def words(cid: str) -> tuple[str, str]:  # the second notifier has read w's alerts
        return alerts_words(cid) if cid == w else snapshot_words(cid)

    send(service.order(w, 1, "1.00", "100000.00"))
    assert service.snapshot(w).status == "at_risk"
    wait_until(f"{w} at risk", lambda: differences(am, service, words=words), 5, second)
    w_ends = ends_at(w)
    send(service.order(w, 8, "1.00", "1.00"))
    assert service.snapshot(w).status == "unprofitable"
    wait_until(
        f"{w} unprofitable, no longer at risk",
        lambda: differences(am, service, words=words),
        5,
        second,
    )
    assert datetime.now(w_ends.tzinfo) < w_ends, "the old alertname expired, not resolved"

    assert second.terminate() == 0, second.output()
    output = log_path.read_text("utf-8", "replace")
    assert "Traceback" not in output and "ERROR" not in output, output[-3000:]
    print(f"took {time.monotonic() - began:.1f} s")
