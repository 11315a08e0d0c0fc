"""The kafka-python consumer settings both notifiers share (streams/notify_*.py)."""

from __future__ import annotations

from typing import Any

from models.settings import Settings
from streams.kafka_security import kafka_python_config


def notifier_consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer in `group_id` that commits only what it has handled, starts a new
    group at the topic's start and never sees an aborted transaction's records."""
    session_s, heartbeat_s = settings.session_timeout_seconds, settings.heartbeat_interval_seconds
    if settings.broker_kind == "tansu":
        session_s = min(session_s, 4.0)  # tansu holds a JoinGroup half of it
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "group_id": group_id,
        "client_id": group_id,
        "enable_auto_commit": False,
        # A new group takes what the topics still hold, not only what comes next.
        "auto_offset_reset": "earliest",
        # Outputs of an aborted transaction (exactly_once) were never sent.
        "isolation_level": "read_committed",
        "session_timeout_ms": int(session_s * 1000),
        "heartbeat_interval_ms": int(min(heartbeat_s, session_s / 3) * 1000),
        **kafka_python_config(settings.kafka),
    }
