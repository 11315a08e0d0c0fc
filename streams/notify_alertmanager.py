"""`profitwatch notify alertmanager`: a Prometheus Alertmanager kept in step with the
customers' statuses, one alert per customer `at_risk` or `unprofitable` (what the
alerts are: alerts/alertmanager.py).

- A kafka-python consumer in group `<app_id>-notify-alertmanager` on the snapshots and
  the alerts topics, without auto-commit. Range assignment, so that partition n of
  both topics (co-partitioned by customer) goes to the same notifier.
- The statuses come from the snapshots topic. On every assignment its partitions are
  read from the beginning (the compacted topic holds each customer's latest snapshot),
  so the notifier's knowledge survives its restarts and moves with a partition. A
  record below the group's committed offset was delivered before; one at or after it
  is a change to deliver. Nothing is POSTed until every assigned partition is read up
  to its end offset at the assignment.
- The alerts topic, read from the committed offset, gives the annotations' words (the
  latest alert per customer, in memory). After a restart a customer whose alert was
  committed before is described by its snapshot's figures instead.
- Every change is POSTed (`/api/v2/alerts`) at once: the new alertname firing, the old
  one resolved (`endsAt` = now). Every firing alert is POSTed again every
  `resend_interval_seconds` with `endsAt` = now + `valid_for_intervals` intervals; so
  an Alertmanager that restarted (it keeps alerts in memory only) has them all again
  within one interval, and alerts of a notifier that is gone for good resolve by
  themselves, as Prometheus' do (4 evaluation intervals).
- Offsets are committed only after everything read up to them was delivered. 5xx,
  429, other unexpected answers, timeouts and connection errors are retried without
  end, after full-jitter backoff (its Retry-After honoured), while the consumer keeps
  polling (and so its place in the group); a later change of a customer supersedes an
  undelivered one. A 400 (alerts Alertmanager refuses; it keeps the valid ones of a
  batch) is logged as an error and not retried: the same alerts would be refused again.
- SIGTERM/SIGINT (`AlertmanagerNotifier.stop`): a POST under way finishes (within the
  timeout); what was delivered is committed; the consumer leaves the group. The
  alerts stay in Alertmanager: whoever owns the partitions next sends them again.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from alerts.alertmanager import API_PATH, UNKNOWN, Book, Plan, decode_alert, decode_snapshot
from alerts.webhooks import backoff_s, retry_after_s
from models.errors import ConfigError
from models.notifiers import group_id
from models.settings import AlertmanagerSettings, Settings
from streams.notifier_consumer import notifier_consumer_config
from streams.topics import ensure_topics

__all__ = [
    "AlertmanagerClient",
    "AlertmanagerNotifier",
    "Answer",
    "alerts_url",
    "ensure_notifier_topics",
    "shown_url",
]

log = logging.getLogger(__name__)

USER_AGENT = "profitwatch-notify-alertmanager"
MAX_POLL_S = 0.5  # how soon an idle notifier notices a stop
MAX_RECORDS = 500
COMMIT_EVERY_S = 5.0  # records that changed nothing are committed this often at most
RETRY_AFTER_MAX_S = 300.0
SHOWN_CHANGES = 10  # customers named in a log line


def _http_url(url: str, what: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{what}: an http:// or https:// URL with a host is needed")
    return parsed


def alerts_url(url: str | None) -> httpx.URL:
    """Alertmanager's `/api/v2/alerts` under the base URL given (with its route prefix,
    `--web.route-prefix`, if any); a URL that already ends with it is taken as it is."""
    if not url:
        raise ConfigError("notify alertmanager needs --url (or PROFITWATCH_ALERTMANAGER__URL)")
    parsed = _http_url(url, "alertmanager url")
    path = parsed.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return parsed.copy_with(path=path)


def shown_url(url: httpx.URL) -> str:
    """For logs: without user info (a basic-auth password) and query."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


@dataclass(frozen=True)
class Answer:
    """How one POST went: `delivered` (2xx), `refused` (400/422: retrying the same
    alerts cannot help) or `retry`."""

    kind: Literal["delivered", "refused", "retry"]
    detail: str = ""
    retry_after_s: float | None = None


class AlertmanagerClient:
    """POSTs lists of alerts to one Alertmanager; no Kafka here."""

    def __init__(
        self,
        am: AlertmanagerSettings,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = alerts_url(am.url)
        headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
        if am.bearer_token is not None:
            headers["authorization"] = f"Bearer {am.bearer_token.get_secret_value()}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(am.timeout_seconds),
            follow_redirects=False,  # a redirect is a wrong URL: fix it, do not follow it
            headers=headers,  # user:password@ in the URL: httpx sends basic auth
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def post(self, alerts: list[dict[str, Any]]) -> Answer:
        body = json.dumps(alerts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            r = self._client.post(self.url, content=body)
        except httpx.TimeoutException as exc:
            return Answer("retry", f"timed out ({type(exc).__name__})")
        except httpx.RequestError as exc:
            return Answer("retry", f"{type(exc).__name__}: {exc}")
        if 200 <= r.status_code < 300:
            return Answer("delivered")
        text = r.text.strip().replace("\n", " ")[:300]
        detail = f"HTTP {r.status_code} {r.reason_phrase}".rstrip() + (f": {text}" if text else "")
        if r.status_code in (400, 422):
            return Answer("refused", detail)
        return Answer("retry", detail, retry_after_s(r.headers.get("retry-after")))


def ensure_notifier_topics(settings: Settings) -> list[str]:
    """Create the snapshots (compacted) and alerts topics when no worker has yet, with
    the configs the service gives them (streams/topics.py). Returns the names created."""
    wanted = {settings.topics.alerts, settings.topics.snapshots}
    return ensure_topics(settings, only=wanted, client="notify-alertmanager-admin")


@dataclass
class Counts:
    """What the notifier did since it started (streams/notifier_metrics.py)."""

    posts: int = 0
    failed_posts: int = 0  # answered `retry`: tried again
    refused_posts: int = 0  # answered 400/422: not retried
    firing: int = 0  # alerts kept firing, as of the last full re-send
    changes: int = 0  # customers whose alertname changed, delivered
    invalid: int = 0  # records that are neither snapshot, tombstone nor alert


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: AlertmanagerNotifier) -> None:
        self._notifier = notifier

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._notifier._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._notifier._on_assigned(assigned)


class AlertmanagerNotifier:
    """The consumer loop: `run()` until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        am: AlertmanagerSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        _http_url(am.dashboard_url, "dashboard url")
        self.settings = settings
        self.am = am
        self.client = AlertmanagerClient(am, transport=transport)  # refuses a bad URL
        self.group_id = group_id(settings.app_id, "alertmanager")
        self.book = Book(currency=settings.reporting_currency, dashboard_url=am.dashboard_url)
        self.counts = Counts()
        self._rand = rand
        self._stop = threading.Event()
        self._snapshots = settings.topics.snapshots
        self._consumer: KafkaConsumer | None = None
        self._fresh: set[TopicPartition] = set()  # assigned, not yet set up to be re-read
        self._rebuilding: dict[TopicPartition, int] = {}  # -> end offset when assigned
        self._base: dict[TopicPartition, int | None] = {}  # the group's offset when assigned
        self._consumed: dict[TopicPartition, int] = {}  # the next offset to read
        self._committed: dict[TopicPartition, int] = {}
        self._next_full = 0.0  # monotonic: when every firing alert is sent again
        self._next_commit = 0.0
        self._retry_at = 0.0
        self._failures = 0
        self._valid_for = timedelta(seconds=am.resend_interval_seconds * am.valid_for_intervals)

    def stop(self) -> None:
        """Safe from a signal handler: the loop stops at its next step."""
        self._stop.set()

    # --- the group ---

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        snapshots = [tp for tp in assigned if tp.topic == self._snapshots]
        if snapshots:
            assert self._consumer is not None
            # Here, inside the poll: the fetch that follows starts at the beginning.
            self._consumer.seek_to_beginning(*snapshots)
            self._fresh.update(snapshots)
        self._next_full = 0.0  # once read: everything, at once

    def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        gone = list(revoked)
        for tp in gone:
            for d in (self._consumed, self._committed, self._rebuilding, self._base):
                d.pop(tp, None)
            self._fresh.discard(tp)
        # Its next owner reads them again and sends their alerts: nothing is resolved.
        self.book.drop_partitions({tp.partition for tp in gone if tp.topic == self._snapshots})

    def _consumer_of(self) -> KafkaConsumer:
        return KafkaConsumer(
            partition_assignment_strategy=[RangePartitionAssignor],
            max_poll_records=MAX_RECORDS,
            # A delivery round is POSTs of at most `timeout_seconds` each, stopped at
            # the first failure; retries wait while polling.
            max_poll_interval_ms=600_000,
            **notifier_consumer_config(self.settings, self.group_id),
        )

    def run(self) -> Counts:
        for noisy in ("httpx", "kafka"):  # httpx logs each URL (a token in it) at INFO
            logging.getLogger(noisy).setLevel(logging.WARNING)
        ensure_notifier_topics(self.settings)
        consumer = self._consumer = self._consumer_of()
        topics = self.settings.topics
        consumer.subscribe([topics.snapshots, topics.alerts], listener=_Listener(self))
        log.info(
            "notify alertmanager: %s and %s to %s as group %s (re-sent every %g s, valid for %g s)",
            topics.snapshots,
            topics.alerts,
            shown_url(self.client.url),
            self.group_id,
            self.am.resend_interval_seconds,
            self._valid_for.total_seconds(),
        )
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=self._poll_ms())
                self._set_up_rebuilds(consumer)
                assigned = consumer.assignment()
                for tp, records in batch.items():
                    if tp in assigned:
                        for rec in records:
                            self._apply(tp, rec)
                self._check_rebuilds(consumer, caught_up=not batch)
                if not self._rebuilding and not self._fresh:
                    self._sync(consumer)
            if not self._rebuilding and not self._fresh and not self.book.changes:
                self._commit(consumer, dict(self._consumed))  # all of it was delivered
            return self.counts
        finally:
            firing, undelivered = len(self.book.firing_names()), self.book.changes
            self.client.close()
            consumer.close(autocommit=False)  # leaving the group revokes: the book empties
            log.info(
                "notify alertmanager stopped: %d changes delivered in %d POSTs "
                "(%d failed); %d firing, %d changes undelivered",
                self.counts.changes,
                self.counts.posts,
                self.counts.failed_posts,
                firing,
                undelivered,
            )

    def _poll_ms(self) -> int:
        now = time.monotonic()
        due = self._retry_at if self._failures else self._next_full
        return int(max(0.01, min(MAX_POLL_S, due - now)) * 1000)

    # --- reading ---

    def _set_up_rebuilds(self, consumer: KafkaConsumer) -> None:
        """For the snapshot partitions just assigned (and sought to their beginning):
        the group's committed offset (below it: delivered) and the end offset (read to
        it before anything is POSTed). Before their records are applied."""
        if not self._fresh:
            return
        fresh = sorted(self._fresh)
        self._fresh.clear()
        ends = consumer.end_offsets(fresh)
        for tp in fresh:
            self._base[tp] = consumer.committed(tp)
            self._rebuilding[tp] = ends.get(tp, 0)
        log.info(
            "reading %s partitions %s from the beginning (committed %s, end %s)",
            self._snapshots,
            ",".join(str(tp.partition) for tp in fresh),
            ",".join(str(self._base[tp]) for tp in fresh),
            ",".join(str(self._rebuilding[tp]) for tp in fresh),
        )

    def _check_rebuilds(self, consumer: KafkaConsumer, *, caught_up: bool) -> None:
        if not self._rebuilding:
            return
        if caught_up:  # nothing came: the end may have moved on, or been misreported
            ends = consumer.end_offsets(list(self._rebuilding))
            self._rebuilding = {tp: min(e, ends.get(tp, e)) for tp, e in self._rebuilding.items()}
        for tp, end in list(self._rebuilding.items()):
            if consumer.position(tp) >= end:
                del self._rebuilding[tp]
        if not self._rebuilding:
            self.book.prune()
            firing = self.book.firing_names()
            log.info(
                "read %s: %d customers at risk, %d unprofitable; %d changes to deliver",
                self._snapshots,
                sum(1 for n in firing.values() if n == "CustomerAtRisk"),
                sum(1 for n in firing.values() if n == "CustomerUnprofitable"),
                self.book.changes,
            )
            self._next_full = 0.0

    def _apply(self, tp: TopicPartition, rec: Any) -> None:
        self._consumed[tp] = rec.offset + 1
        if tp.topic == self._snapshots:
            key = rec.key.decode("utf-8", "replace") if rec.key is not None else None
            snapshot = None
            if rec.value is not None:
                try:
                    snapshot = decode_snapshot(rec.value)
                except ValueError as exc:
                    self._invalid(tp, rec, "snapshot", exc)
                    return
            customer = snapshot.customer_id if snapshot is not None else key
            if customer is None:
                return  # a tombstone without a key: nobody's
            base = self._base.get(tp)
            self.book.on_snapshot(
                customer,
                tp.partition,
                snapshot,
                settled=base is not None and rec.offset < base,
                unseen=UNKNOWN if tp in self._rebuilding and base is not None else None,
            )
        elif rec.value is not None:
            try:
                alert = decode_alert(rec.value)
            except ValueError as exc:
                self._invalid(tp, rec, "alert", exc)
                return
            self.book.on_alert(alert, tp.partition)

    def _invalid(self, tp: TopicPartition, rec: Any, what: str, exc: ValueError) -> None:
        self.counts.invalid += 1
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning(
            "%s[%d]@%d is not a%s %s, skipped: %s",
            tp.topic,
            tp.partition,
            rec.offset,
            "n" if what[0] in "aeiou" else "",
            what,
            first,
        )

    # --- delivering ---

    def _sync(self, consumer: KafkaConsumer) -> None:
        now_m = time.monotonic()
        if self._failures and now_m < self._retry_at:
            return
        full = now_m >= self._next_full
        if not full and not self.book.changes:
            if now_m >= self._next_commit:
                self._commit(consumer, dict(self._consumed))
            return
        positions = dict(self._consumed)  # what the plan covers
        plan = self.book.plan(datetime.now(UTC), full=full, valid_for=self._valid_for)
        answer = self._deliver(plan)
        if answer.kind == "retry":
            self._failures += 1
            am = self.am
            delay = backoff_s(
                self._failures - 1, am.backoff_base_seconds, am.backoff_cap_seconds, self._rand
            )
            if answer.retry_after_s is not None:
                delay = max(delay, min(answer.retry_after_s, RETRY_AFTER_MAX_S))
            self._retry_at = now_m + delay
            log.warning(
                "alertmanager %s: %s; undelivered: %s; attempt %d, next in %.2f s",
                shown_url(self.client.url),
                answer.detail,
                _described(plan),
                self._failures,
                delay,
            )
            return
        if answer.kind == "refused":
            log.error(
                "alertmanager %s refused alerts (not retried): %s",
                shown_url(self.client.url),
                answer.detail,
            )
        if self._failures:
            log.info("alertmanager reachable again after %d failed attempts", self._failures)
        self._failures = 0
        self.book.settle(plan)
        self.book.prune()
        self.counts.changes += len(plan.changed)
        if full:
            self._next_full = now_m + self.am.resend_interval_seconds
            self.counts.firing = plan.firing
        if plan.changed:
            log.info("delivered %s", _described(plan))
        self._commit(consumer, positions)

    def _deliver(self, plan: Plan) -> Answer:
        answer = Answer("delivered")
        for chunk in plan.chunks(self.am.batch_size):
            got = self.client.post(chunk)
            self.counts.posts += 1
            if got.kind == "retry":
                self.counts.failed_posts += 1
                return got
            if got.kind == "refused":
                self.counts.refused_posts += 1
                answer = got
        return answer

    def _commit(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        self._next_commit = time.monotonic() + COMMIT_EVERY_S
        assigned = consumer.assignment()
        offsets: dict[TopicPartition, Any] = {}
        for tp, position in positions.items():
            if tp not in assigned:
                continue
            base = self._base.get(tp)
            at = max(position, base) if base is not None else position  # never backwards
            if self._committed.get(tp) != at:
                offsets[tp] = OffsetAndMetadata(at, "", -1)
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced meanwhile: the partitions' next owner reads them again.
            log.warning("commit failed: %s", exc)
            return
        except KafkaError as exc:  # a coordinator moving, say: the next commit covers it
            log.warning("commit failed, tried again later: %r", exc)
            return
        self._committed.update({tp: meta.offset for tp, meta in offsets.items()})


def _described(plan: Plan) -> str:
    """`3 changes (c-1 CustomerAtRisk, c-2 resolved, …), 40 firing alerts re-sent`."""
    parts = []
    now = {c: "resolved" if a is None else a.alertname for c, a in plan.settles.items()}
    if plan.changed:
        named = ", ".join(f"{c} {now[c]}" for c in plan.changed[:SHOWN_CHANGES])
        more = ", …" if len(plan.changed) > SHOWN_CHANGES else ""
        n = len(plan.changed)
        parts.append(f"{n} change{'' if n == 1 else 's'} ({named}{more})")
    rest = plan.firing - sum(1 for c in plan.changed if plan.settles[c] is not None)
    if rest:
        parts.append(f"{rest} firing alerts re-sent")
    return ", ".join(parts) or "nothing"
