"""The notifiers' side of the Kafka interface (streams/notify_webhook.py,
streams/notify_alertmanager.py): their consumer groups and the headers of the webhook
notifier's dead letters. Pure, so that models/asyncapi.py documents the same names the
notifiers use."""

from __future__ import annotations

from typing import Literal

from models.deadletter import (
    HEADER_CODE,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TOPIC,
)

NotifierName = Literal["webhook", "alertmanager"]

# The webhook notifier's dead letter is the alert as it was (key and value) with
# KIP-1034's headers (models/deadletter.py) and these two.
HEADER_STATUS = "profitwatch.webhook.status"  # the last HTTP status; empty when none came
HEADER_ATTEMPTS = "profitwatch.webhook.attempts"
# Its reasons (header `__streams.errors.exception`).
UndeliverableReason = Literal["rejected", "exhausted", "invalid_alert"]


def group_id(app_id: str, notifier: NotifierName) -> str:
    """The notifier's consumer group: one per application, apart from the workers'."""
    return f"{app_id}-notify-{notifier}"


def undeliverable_headers(
    reason: UndeliverableReason,
    detail: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    attempts: int,
    status: int | None,
) -> list[tuple[str, bytes]]:
    """The headers of an alert the webhook notifier gave up on: where it was consumed
    and why, as KIP-1034 names them, then the last HTTP status and the attempts."""
    return [
        (HEADER_CODE, reason.encode()),
        (HEADER_MESSAGE, detail.encode()),
        (HEADER_TOPIC, topic.encode()),
        (HEADER_PARTITION, str(partition).encode()),
        (HEADER_OFFSET, str(offset).encode()),
        (HEADER_STATUS, ("" if status is None else str(status)).encode()),
        (HEADER_ATTEMPTS, str(attempts).encode()),
    ]
