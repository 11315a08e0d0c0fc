"""`profitwatch notify webhook`: every alert of the alerts topic POSTed to one HTTP
endpoint (a CRM), signed as Standard Webhooks says (alerts/webhooks.py).

- A kafka-python consumer in group `<app_id>-notify-webhook`, without auto-commit: a
  record's offset is committed once its alert was delivered or dead-lettered, so a
  crash sends again at most the alert in flight, with the same `webhook-id`.
- One record at a time: alerts are keyed by customer, so each customer's alerts reach
  the endpoint in their order, retries included.
- A 2xx is delivered. 5xx, 429 (its Retry-After honoured), timeouts and connection
  errors are retried with exponential backoff and full jitter; after the last attempt
  the alert is dead-lettered. Any other answer (3xx: redirects are not followed; 4xx)
  is dead-lettered at once. 410 Gone disables the endpoint: the notifier stops
  (`EndpointGone`, exit code 3) and that alert stays uncommitted.
- A dead letter is the alert as it was (key and value) on `webhook.undeliverable_topic`,
  with the KIP-1034 headers of the project's DLQ (reason, detail, origin) and the last
  HTTP status and the number of attempts.
- SIGTERM/SIGINT (`Notifier.stop`): a request under way finishes (within the timeout)
  and is committed if delivered; an alert waiting for its next attempt is abandoned,
  uncommitted. Then the consumer leaves the group.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from alerts.webhooks import MIN_KEY_BYTES, backoff_s, parse_secret, retry_after_s, verdict
from alerts.webhooks import webhook_headers as signed_headers
from models.asyncapi import undeliverable_spec
from models.errors import ConfigError, ProfitwatchError
from models.notifiers import UndeliverableReason, group_id, undeliverable_headers
from models.settings import Settings, WebhookSettings
from streams.kafka_security import kafka_python_config
from streams.notifier_consumer import notifier_consumer_config
from streams.topics import ensure_topics

__all__ = [
    "EXIT_ENDPOINT_GONE",
    "EndpointGone",
    "Notifier",
    "Outcome",
    "Sender",
    "ensure_notifier_topics",
]

log = logging.getLogger(__name__)

EXIT_ENDPOINT_GONE = 3
# A longer Retry-After is waited this long: the alert's partition waits meanwhile, and
# the attempts still bound how long one alert can hold it.
RETRY_AFTER_MAX_S = 300.0
POLL_MS = 500  # how soon an idle notifier notices a stop
USER_AGENT = "profitwatch-notify-webhook"

OutcomeKind = Literal["delivered", "rejected", "exhausted", "gone", "abandoned"]


class EndpointGone(ProfitwatchError):
    """The endpoint answered 410 Gone: it wants no more webhooks from us."""


@dataclass(frozen=True)
class Outcome:
    """How one alert's delivery ended; `status` is the last HTTP status (None after a
    timeout or connection error), `detail` what went wrong last."""

    kind: OutcomeKind
    attempts: int
    status: int | None = None
    detail: str = ""


def _checked_url(url: str | None) -> httpx.URL:
    if not url:
        raise ConfigError("notify webhook needs --url (or PROFITWATCH_WEBHOOK__URL)")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"webhook url: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError("webhook url: an http:// or https:// URL with a host is needed")
    return parsed


def shown_url(url: httpx.URL) -> str:
    """For logs: without user info and query, where an endpoint's token may be."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


class Sender:
    """POSTs one alert until it is delivered, given up on or the notifier stops.
    No Kafka here. `wait(seconds)` sleeps before a retry and returns True when the
    notifier is stopping; `rand` is the jitter's source."""

    def __init__(
        self,
        url: str,
        key: bytes,
        webhook: WebhookSettings,
        *,
        wait: Callable[[float], bool],
        rand: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _checked_url(url)
        self._key = key
        self._webhook = webhook
        self._wait = wait
        self._rand = rand
        self._client = httpx.Client(
            # httpx's timeout is per phase: connecting, sending, each wait for bytes
            timeout=httpx.Timeout(webhook.timeout_seconds),
            follow_redirects=False,  # the spec: a redirect is a failure, fix the URL
            headers={"user-agent": USER_AGENT},
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def deliver(self, msg_id: str, body: bytes) -> Outcome:
        wh = self._webhook
        status: int | None = None
        detail = ""
        for attempt in range(1, wh.attempts + 1):
            # A fresh timestamp and signature per attempt, the same id (the spec).
            headers = signed_headers(self._key, msg_id, body) | {"content-type": "application/json"}
            retry_after: float | None = None
            try:
                # Streamed and closed unread: only the status matters, and a large or
                # badly encoded response body must not fail a delivery.
                with self._client.stream("POST", self.url, content=body, headers=headers) as r:
                    status, reason = r.status_code, r.reason_phrase
                    retry_after = retry_after_s(r.headers.get("retry-after"))
            except httpx.TimeoutException as exc:
                status, detail = None, f"timed out ({type(exc).__name__})"
            except httpx.RequestError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            else:
                detail = f"HTTP {status} {reason}".rstrip()
                match verdict(status):
                    case "delivered":
                        return Outcome("delivered", attempt, status)
                    case "gone":
                        return Outcome("gone", attempt, status, detail)
                    case "reject":
                        return Outcome("rejected", attempt, status, f"{detail}: not retried")
                    case "retry":
                        pass
            if attempt == wh.attempts:
                break
            delay = backoff_s(
                attempt - 1, wh.backoff_base_seconds, wh.backoff_cap_seconds, self._rand
            )
            if retry_after is not None:
                delay = max(delay, min(retry_after, RETRY_AFTER_MAX_S))
            log.warning(
                "webhook %s: attempt %d of %d: %s; next in %.2f s",
                msg_id,
                attempt,
                wh.attempts,
                detail,
                delay,
            )
            if self._wait(delay):
                return Outcome("abandoned", attempt, status, detail)
        return Outcome(
            "exhausted", wh.attempts, status, f"{detail}; given up after {wh.attempts} attempts"
        )


def max_poll_interval_ms(webhook: WebhookSettings) -> int:
    """The longest one record may take, so the group does not drop a consumer that is
    still retrying: every attempt's timeouts (connect, send, answer) and wait, plus a
    minute for the dead letter and the commit. At least kafka-python's 5 minutes."""
    wait = max(webhook.backoff_cap_seconds, RETRY_AFTER_MAX_S)
    worst = webhook.attempts * (3 * webhook.timeout_seconds + wait) + 60
    return max(300_000, math.ceil(worst * 1000))


def ensure_notifier_topics(settings: Settings, webhook: WebhookSettings) -> list[str]:
    """Create the alerts topic (when no worker has yet) and the undeliverable topic if
    missing, as streams/topics.py does. Returns the names created."""
    return ensure_topics(
        settings,
        only={settings.topics.alerts},
        extra=[undeliverable_spec(settings, webhook)],
        client="notify-webhook-admin",
    )


def _alert_id(value: bytes | None) -> tuple[str | None, str]:
    """(alert_id, customer_id) of a record's value; no id when it is not an alert."""
    if value is None:
        return None, ""
    try:
        # UTF-8 first: json.loads would take UTF-16 too, which cannot be signed as sent.
        # parse_float: money is Decimal (the body is sent as it is anyway).
        doc: Any = json.loads(value.decode("utf-8"), parse_float=Decimal)
    except ValueError:  # UnicodeDecodeError included
        return None, ""
    if not isinstance(doc, dict):
        return None, ""
    aid, cid = doc.get("alert_id"), doc.get("customer_id")
    if not isinstance(aid, str) or not aid or "." in aid:
        return None, ""
    return aid, cid if isinstance(cid, str) else ""


@dataclass
class Counts:
    """What the notifier settled since it started (streams/notifier_metrics.py)."""

    delivered: int = 0
    dead_lettered_by: dict[str, int] = field(default_factory=dict)  # by reason
    attempts: int = 0  # HTTP attempts of the alerts settled
    last_delivered_at: float | None = None  # Unix time

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_lettered_by.values())


class Notifier:
    """The consumer loop: `run()` until `stop()` (or a 410: `EndpointGone`)."""

    def __init__(self, settings: Settings, webhook: WebhookSettings) -> None:
        if webhook.secret is None:
            raise ConfigError(
                "notify webhook needs --secret (or PROFITWATCH_WEBHOOK__SECRET): whsec_ "
                "followed by the base64 of 24 to 64 random bytes"
            )
        self.settings = settings
        self.webhook = webhook
        self.group_id = group_id(settings.app_id, "webhook")
        self._stop = threading.Event()
        self.sender = Sender(
            webhook.url or "",
            parse_secret(webhook.secret, min_bytes=MIN_KEY_BYTES),
            webhook,
            wait=self._stop.wait,
        )
        self.counts = Counts()

    def stop(self) -> None:
        """Safe from a signal handler: the loop stops at its next step."""
        self._stop.set()

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            self.settings.topics.alerts,
            max_poll_interval_ms=max_poll_interval_ms(self.webhook),
            **notifier_consumer_config(self.settings, self.group_id),
        )

    def _producer(self) -> KafkaProducer:
        s = self.settings
        return KafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers.split(","),
            client_id=f"{self.group_id}-undeliverable",
            acks="all",
            **kafka_python_config(s.kafka),
        )

    def run(self) -> Counts:
        # httpx logs each request's full URL at INFO, where an endpoint's token may be,
        # and kafka-python every connection: our own lines say what matters.
        for noisy in ("httpx", "kafka"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        ensure_notifier_topics(self.settings, self.webhook)
        producer = self._producer()
        consumer = self._consumer()
        log.info(
            "notify webhook: alerts of %s to %s as group %s (%d attempts, timeout %g s)",
            self.settings.topics.alerts,
            shown_url(self.sender.url),
            self.group_id,
            self.webhook.attempts,
            self.webhook.timeout_seconds,
        )
        try:
            while not self._stop.is_set():
                # One record per poll: the next one is fetched only after this one is
                # committed, which keeps each partition strictly in order.
                for tp, records in consumer.poll(timeout_ms=POLL_MS, max_records=1).items():
                    for rec in records:
                        if not self._handle(consumer, producer, tp, rec):
                            return self.counts
            return self.counts
        finally:
            self.sender.close()
            consumer.close(autocommit=False)
            producer.close(timeout=10)
            log.info(
                "notify webhook stopped: %d delivered, %d dead-lettered",
                self.counts.delivered,
                self.counts.dead_lettered,
            )

    def _handle(
        self, consumer: KafkaConsumer, producer: KafkaProducer, tp: TopicPartition, rec: Any
    ) -> bool:
        """Deliver or dead-letter one record, then commit it. False: stop here."""
        alert_id, customer = _alert_id(rec.value)
        if alert_id is None:
            self._dead_letter(producer, rec, "invalid_alert", "not an alert (no alert_id)", 0, None)
        else:
            outcome = self.sender.deliver(alert_id, rec.value)
            if outcome.kind == "abandoned":
                log.info("webhook %s: abandoned at stop, not committed", alert_id)
                return False
            if outcome.kind == "gone":
                raise EndpointGone(
                    f"{shown_url(self.sender.url)} answered 410 Gone to alert {alert_id}: "
                    f"the endpoint is disabled; alerts from {tp.topic} partition "
                    f"{tp.partition} offset {rec.offset} on are not committed and are sent "
                    "when the notifier runs again"
                )
            if outcome.kind == "delivered":
                self.counts.delivered += 1
                self.counts.attempts += outcome.attempts
                self.counts.last_delivered_at = time.time()
                log.info(
                    "webhook %s (customer %s): delivered, HTTP %s, attempt %d",
                    alert_id,
                    customer,
                    outcome.status,
                    outcome.attempts,
                )
            else:
                reason: UndeliverableReason = (
                    "rejected" if outcome.kind == "rejected" else "exhausted"
                )
                self._dead_letter(
                    producer, rec, reason, outcome.detail, outcome.attempts, outcome.status
                )
        try:
            # Synchronous: the offset moves on only once the alert is settled.
            consumer.commit({tp: OffsetAndMetadata(rec.offset + 1, "", -1)})
        except CommitFailedError as exc:
            # The group rebalanced meanwhile: this record's next owner sends it again,
            # with the same webhook-id.
            log.warning("commit of %s[%d]@%d failed: %s", tp.topic, tp.partition, rec.offset, exc)
        return True

    def _dead_letter(
        self,
        producer: KafkaProducer,
        rec: Any,
        reason: UndeliverableReason,
        detail: str,
        attempts: int,
        status: int | None,
    ) -> None:
        headers = undeliverable_headers(
            reason,
            detail,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            attempts=attempts,
            status=status,
        )
        topic = self.webhook.undeliverable_topic
        # Waited for: committing before the broker has the dead letter could lose it.
        producer.send(topic, key=rec.key, value=rec.value, headers=headers).get(timeout=30)
        by = self.counts.dead_lettered_by
        by[reason] = by.get(reason, 0) + 1
        self.counts.attempts += attempts
        log.warning(
            "alert at %s[%d]@%d dead-lettered to %s: %s: %s",
            rec.topic,
            rec.partition,
            rec.offset,
            topic,
            reason,
            detail,
        )
