"""Every web route while a worker starts, recovers its table or rebalances, on the
session's real broker: its normal answer or a 503 that says why (JSON, a reason and
Retry-After), never a 500, never a hang; /health stays 200 throughout.

Found by a user: `GET /customers/{id}` half a second after a worker started on a broker
that already held data was a 500 (`TypeError` in Faust's router, before the producer
knew the changelog's partitions). Both tests poll every route from threads, each
request bounded, from before the worker's spawn until a few seconds after it is ready.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from models.partitioner import partition_for
from streams.broker import free_port
from streams.produce import Record, to_kafka
from tests.integration.flow import renamed, stream
from tests.integration.worker import WorkerProcess
from tests.kafka_helpers import produce

# Longer than the workers' own peer timeout (10 s): a request that takes this long
# is a hang, not a slow answer.
CLIENT_TIMEOUT_S = 12.0
POLL_GAP_S = 0.05
AFTER_READY_S = 4.0
NOT_FOUND = "/no/such/route"


def paths(cid: str, *more: str) -> list[str]:
    """Every route of streams/web.py, a known customer's ones with `cid` (and the
    snapshots of `more` known customers)."""
    return [
        "/",
        "/customers?limit=500",
        f"/customers/{cid}",
        f"/customers/{cid}/alerts",
        *(f"/customers/{c}" for c in more),
        "/alerts",
        "/internal/customers?limit=500",
        "/internal/alerts",
        "/metrics",
        "/health",
        "/ready",
        NOT_FOUND,
    ]


@dataclass(frozen=True)
class Answer:
    base: str
    path: str
    at: float  # time.monotonic() when asked
    done: float  # … and when answered or failed
    status: int | None  # None: no HTTP answer (see `failure`)
    body: Any
    retry_after: str | None
    failure: str | None  # "refused", "timeout" or another connection error


def ask(base: str, path: str) -> Answer:
    at = time.monotonic()
    try:
        with urllib.request.urlopen(base + path, timeout=CLIENT_TIMEOUT_S) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, err.headers, err.read()
    except urllib.error.URLError as err:
        refused = isinstance(err.reason, ConnectionRefusedError)
        failure = "refused" if refused else repr(err.reason)
        if isinstance(err.reason, TimeoutError):
            failure = "timeout"
        return Answer(base, path, at, time.monotonic(), None, None, None, failure)
    except TimeoutError:
        return Answer(base, path, at, time.monotonic(), None, None, None, "timeout")
    except OSError as err:  # reset or closed mid-answer
        return Answer(base, path, at, time.monotonic(), None, None, None, repr(err))
    body: Any = raw.decode("utf-8", "replace")
    if "json" in headers.get("Content-Type", ""):
        body = json.loads(raw)
    retry_after = headers.get("Retry-After")
    return Answer(base, path, at, time.monotonic(), status, body, retry_after, None)


class Poller:
    """One thread per (worker, route), each asking again and again until stopped."""

    def __init__(self, bases: list[str], routes: list[str]) -> None:
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(b, p), daemon=True)
            for b in bases
            for p in routes
        ]

    def _run(self, base: str, path: str) -> None:
        while not self._stop.is_set():
            answer = ask(base, path)
            with self._lock:
                self.answers.append(answer)
            self._stop.wait(POLL_GAP_S)

    def __enter__(self) -> Poller:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        assert not any(t.is_alive() for t in self._threads), "a request never returned"


def problems(answers: list[Answer]) -> list[str]:
    """What breaks the rule: normal answers or an explained 503, nothing else."""
    found: list[str] = []
    # A worker listens by the time its first answer came: a request begun after that
    # was refused by a server that stopped listening; one begun before, maybe not.
    listening: dict[str, float] = {}
    for a in answers:
        if a.status is not None:
            listening[a.base] = min(a.done, listening.get(a.base, a.done))
    for a in sorted(answers, key=lambda a: a.at):
        where = f"{a.base}{a.path}"
        if a.status is None:
            if a.failure != "refused" or a.at > listening.get(a.base, a.at):
                found.append(f"{where}: no answer ({a.failure})")
            continue
        if a.path == "/health":
            if a.status != 200:
                found.append(f"{where}: liveness answered {a.status} {a.body}")
        elif a.status == 404:
            # A known customer is never "unknown": that would be a partial table.
            if a.path != NOT_FOUND:
                found.append(f"{where}: 404 {a.body}")
        elif a.status == 503:
            found += [f"{where}: {p}" for p in unavailable_problems(a)]
        elif a.status != 200:
            found.append(f"{where}: {a.status} {a.body}")
    return found


def unavailable_problems(a: Answer) -> list[str]:
    out = []
    error = a.body.get("error") if isinstance(a.body, dict) else None
    if not isinstance(error, dict) or error.get("code") != "unavailable":
        out.append(f"503 without the unavailable error: {a.body!r}")
    elif not isinstance(error.get("reason"), str) or not error["reason"]:
        out.append(f"503 without a reason: {a.body!r}")
    if a.retry_after is None or not a.retry_after.isdigit() or int(a.retry_after) < 1:
        out.append(f"503 without a Retry-After in seconds: {a.retry_after!r}")
    return out


def reasons(answers: list[Answer]) -> Counter[str]:
    """How often each route answered each status (and a 503's reason): for the log."""
    seen: Counter[str] = Counter()
    for a in answers:
        error = a.body.get("error") if isinstance(a.body, dict) else None
        reason = error.get("reason") if isinstance(error, dict) else None
        port = a.base.rsplit(":", 1)[1]
        seen[f":{port}{a.path} {a.status or a.failure}" + (f" {reason}" if reason else "")] += 1
    return seen


def assert_normal(base: str, cid: str, timeout_s: float = 20.0) -> None:
    """Every route's normal answer once the worker has settled (within a short time:
    /ready also asks the broker, which a loaded machine may not answer at once)."""
    deadline = time.monotonic() + timeout_s
    for path in paths(cid):
        want = 404 if path == NOT_FOUND else 200
        while (a := ask(base, path)).status != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert a.status == want, (path, a)
    assert ask(base, f"/customers/{cid}").body["customer_id"] == cid


def consumed(base: str, internal: str) -> tuple[float, float]:
    """Records this worker consumed (every outcome): of the input topics, and all of
    them (the `internal` topic's too), from its metrics."""
    a = ask(base, "/metrics")
    inputs = total = 0.0
    for line in str(a.body).splitlines() if a.status == 200 else []:
        if line.startswith("profitwatch_input_records_total{"):
            n = float(line.rsplit(" ", 1)[1])
            total += n
            inputs += 0.0 if f'topic="{internal}"' in line else n
    return inputs, total


def wait_settled(base: str, timeout_s: float = 60.0) -> set[str]:
    """Until the worker answers its customers list; returns the customer ids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        a = ask(base, "/customers?limit=500")
        if a.status == 200 and a.body["customers"] and not a.body["next_cursor"]:
            return {r["customer_id"] for r in a.body["customers"]}
        time.sleep(0.5)
    raise AssertionError(f"{base} never answered its list")


def worker(env: dict[str, str], tmp_path: Path, name: str) -> tuple[WorkerProcess, str]:
    port = free_port()
    w = WorkerProcess(
        env
        | {
            "PROFITWATCH_WEB_PORT": str(port),
            "PROFITWATCH_DATA_DIR": str(tmp_path / f"data-{name}"),
        },
        tmp_path / f"worker-{name}.log",
    )
    return w, f"http://127.0.0.1:{port}"


def backlog(settings: Any, seed: int) -> list[Record]:
    """About a thousand input records of 24 customers, on this test's topics."""
    return [to_kafka(r) for r in renamed(stream(customers=24, days=90, seed=seed), settings)]


def consume_all(
    w: WorkerProcess, base: str, settings: Any, count: int, timeout_s: float = 60.0
) -> None:
    """Until the worker has consumed `count` input records and then nothing more for
    a second and a half: what they sent through the internal topic is applied too."""
    deadline = time.monotonic() + timeout_s
    last = (0.0, 0.0)
    while time.monotonic() < deadline:
        now = consumed(base, settings.topics.internal)
        if now[0] >= count and now == last:
            return
        last = now
        time.sleep(1.5)
    raise AssertionError(f"worker consumed {last} of {count}:\n{w.output()[-2000:]}")


@pytest.mark.timeout(120)
def test_every_route_while_a_worker_starts_and_recovers(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    records = backlog(settings, seed=21)
    half = len(records) // 2
    # A first worker leaves a changelog (for the next one to restore) and committed
    # offsets; it stops gracefully, so every state it applied is on the changelog.
    produce(kafka_bootstrap, records[:half])
    first, first_base = worker(env, tmp_path, "first")
    workers.append(first)
    first.start(web=True)
    consume_all(first, first_base, settings, half)
    cid = sorted(wait_settled(first_base))[0]
    first.stop()
    # … and more input waits on the broker: the next worker restores, then catches up.
    produce(kafka_bootstrap, records[half:])

    # An empty data dir: the whole table comes back from the changelog.
    second, base = worker(env, tmp_path, "second")
    workers.append(second)
    with Poller([base], paths(cid)) as poller:
        offset = second.spawn(web=True)
        second.wait_ready(offset, time.monotonic() + 60)
        time.sleep(AFTER_READY_S)
    answers = poller.answers
    print("answers:", dict(reasons(answers)))
    found = problems(answers)
    assert not found, "\n".join(found[:20]) + "\n" + second.output(offset)[-3000:]
    assert any(a.status == 503 for a in answers), "no 503 seen: the start window was missed"
    assert any(a.path == "/ready" and a.status == 503 for a in answers)
    assert_normal(base, cid)


@pytest.mark.timeout(120)
def test_every_route_while_a_second_worker_joins(
    kafka_bootstrap: str, service: Any, tmp_path: Path
) -> None:
    env, settings, workers = service
    records = backlog(settings, seed=22)
    produce(kafka_bootstrap, records)
    first, a = worker(env, tmp_path, "a")
    workers.append(first)
    first.start(web=True)
    consume_all(first, a, settings, len(records))
    customers = wait_settled(a)
    # A customer of every partition: some move to the joining worker, some stay, so
    # requests are forwarded both ways.
    per_partition = {
        partition_for(c.encode(), settings.partitions): c for c in sorted(customers, reverse=True)
    }
    cid, *more = sorted(per_partition.values())
    assert_normal(a, cid)

    second, b = worker(env, tmp_path, "b")
    workers.append(second)
    # Against the first worker throughout the rebalance, and the joining one as it
    # starts (its customers are forwarded to it, its part of the lists asked of it).
    with Poller([a, b], paths(cid, *more)) as poller:
        offset = second.spawn(web=True)
        second.wait_ready(offset, time.monotonic() + 60)
        time.sleep(AFTER_READY_S)
    answers = poller.answers
    print("answers:", dict(reasons(answers)))
    found = problems(answers)
    assert not found, "\n".join(found[:20]) + "\n" + second.output(offset)[-3000:]
    assert any(x.base == a and x.status == 503 for x in answers), "the rebalance window was missed"
    assert any(x.base == a and x.status == 200 for x in answers)

    # Settled: both answer every route, and the lists span both workers again.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and wait_settled(a) != customers:
        time.sleep(0.5)
    for base in (a, b):
        assert wait_settled(base) == customers
        assert_normal(base, cid)
        owned = {
            r["customer_id"] for r in ask(base, "/internal/customers?limit=500").body["customers"]
        }
        assert owned & {cid, *more}, f"{base} owns none of the polled customers"
