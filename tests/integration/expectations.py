"""What the service must end with, from `replay` over the phases it saw, and the check
that it does: figures, statuses, the DLQ multiset and every alert, in order, of every
customer without referral credits. Shared by the order, chaos and rebalance tests."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from models.generator import GeneratorConfig, generate_records
from models.ledger import REF
from models.replay import Replayer
from models.settings import Settings
from streams.produce import send_all, to_kafka
from tests.integration.flow import (
    FIGURES,
    alerts_per_customer,
    renamed,
    settle_referrals,
    wait_for,
)
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import read_topic


class Expected:
    """Replay over the phases the service saw, each phase's records in the order of
    application, one phase after the other (the referrals settled before the rest)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.r = Replayer(settings)
        self.alerts: dict[str, list[dict[str, Any]]] = {}

    def phase(self, records: list[dict[str, Any]]) -> Expected:
        lines = [json.dumps(r, default=str).encode() for r in records]
        for _, outputs in self.r.replay_lines(lines):
            for o in outputs:
                if o.topic == self.settings.topics.alerts:
                    self.alerts.setdefault(o.value["customer_id"], []).append(o.value)
        return self

    def figures(self) -> dict[str, dict[str, Any]]:
        out = {}
        for cid, s in self.r.states.items():
            if s.has_own_events:
                exp = self.r.model.snapshot_wire(s)
                out[cid] = {k: exp[k] for k in FIGURES}
        return out

    def uncredited(self) -> list[str]:
        return sorted(
            c for c, s in self.r.states.items() if s.has_own_events and s.lifetime[REF] == 0
        )


def generated(customers: int, days: int, seed: int, settings: Settings) -> list[dict[str, Any]]:
    """A generated stream with the generator's upstream jitter, on this test's topics."""
    cfg = GeneratorConfig(customers=customers, days=days, seed=seed)
    assert cfg.jitter > 0
    return renamed(list(generate_records(cfg)), settings)


def split_referrals(
    records: list[dict[str, Any]], settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ref = [r for r in records if r["topic"] == settings.topics.referrals]
    return ref, [r for r in records if r["topic"] != settings.topics.referrals]


def check_equal(bootstrap: str, settings: Settings, exp: Expected) -> int:
    """Every customer's final figures and status, the DLQ multiset, and the alerts in
    order of every customer without credits; returns how many were compared."""
    want = exp.figures()
    snaps = wait_for(bootstrap, settings, want, timeout_s=240)
    for cid, figures in want.items():
        assert {k: snaps[cid][k] for k in FIGURES} == figures, cid
    statuses = {c: s.status for c, s in exp.r.states.items() if s.has_own_events}
    assert {c: snaps[c]["status"] for c in statuses} == statuses
    # A record redelivered after a crash is dead-lettered again: the same source
    # topic, partition and offset, which is how a DLQ consumer tells them apart.
    letters = {}
    for rec in read_topic(bootstrap, settings.topics.dlq, idle_s=1.0):
        err = json.loads(rec.value or b"{}")["error"]
        letters[(err["topic"], err["partition"], err["offset"])] = err["code"]
    assert Counter(letters.values()) == Counter(exp.r.rejections)
    got = alerts_per_customer(bootstrap, settings)
    compared = exp.uncredited()
    # The service agrees on who received no credits, and alerted no one else that
    # replay leaves out: the compared set is every such customer on both sides.
    service_uncredited = sorted(
        c for c, snap in snaps.items() if snap["lifetime"]["referral_value"] == "0.00"
    )
    assert service_uncredited == compared
    assert set(got) - {c for c in want if c not in compared} <= set(compared)
    for cid in compared:
        mine = [(a["kind"], a["alert_id"], a["as_of"]) for a in got.get(cid, [])]
        theirs = [(a["kind"], a["alert_id"], a["as_of"]) for a in exp.alerts.get(cid, [])]
        assert mine == theirs, (cid, mine, theirs)  # both, to tell a lost alert from a path
    assert sum(len(exp.alerts.get(c, [])) for c in compared) > 0  # alerts were compared
    return len(compared)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(port: int) -> Samples:
    """Every sample of /metrics on `port`: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def settled(
    bootstrap: str, env: dict[str, str], settings: Settings, log: Path, ref: list[dict[str, Any]]
) -> WorkerProcess:
    """A worker that applied the referrals (and their links), then stopped (SIGTERM)."""
    worker = WorkerProcess(env, log)
    worker.start()
    send_all(bootstrap, (to_kafka(r) for r in ref), pace_s=0.01)
    settle_referrals(bootstrap, settings, ref)
    worker.stop()
    return worker


def wait_for_progress(committed: Callable[[], int], total: int, share: float = 0.1) -> int:
    """Until `share` of what is left to commit (out of `total`) has been committed;
    returns the committed count then (a moment mid-stream for a fault)."""
    start = committed()
    deadline = time.monotonic() + 120
    now = start
    while now - start < (total - start) * share and time.monotonic() < deadline:
        time.sleep(0.05)
        now = committed()
    return now


def get_when_available(url: str, timeout_s: float = 60.0) -> Any:
    """GET a JSON answer, waiting out 503s as their Retry-After says (a rebalance
    can still be on when a stream is done: a dead member leaves at its session end)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            if err.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(min(float(err.headers.get("Retry-After") or 1), 5.0))


def check_api_figures(port: int, exp: Expected) -> None:
    """Every customer's figures through the worker's API equal replay's."""
    for cid, figures in exp.figures().items():
        got = get_when_available(f"http://127.0.0.1:{port}/customers/{cid}")
        assert {k: got[k] for k in FIGURES} == figures, (port, cid)
