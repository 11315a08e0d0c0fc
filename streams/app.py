"""The Faust app, built from `Settings`. Broker-specific client settings live here,
in one place, with the reason for each.
"""

from __future__ import annotations

from typing import Any

import faust

from models.settings import Settings


def broker_url(settings: Settings) -> str:
    hosts = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    return ";".join(f"kafka://{h}" for h in hosts)


def app_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker": broker_url(settings),
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "processing_guarantee": settings.processing_guarantee,
        # A new group reads input from the start: nothing upstream published is skipped.
        "consumer_auto_offset_reset": "earliest",
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        "web_host": settings.web_bind,
    }
    if settings.broker_kind == "tansu":
        conf.update(
            # tansu holds a JoinGroup for half the session timeout: Faust's default
            # (60 s) would cost 30 s per start and per rebalance. Real Kafka refuses
            # sessions below group.min.session.timeout.ms (6 s), so only here.
            broker_session_timeout=4.0,
            broker_heartbeat_interval=1.0,
            # tansu answers ListOffsets "latest" with the base offset of the last batch
            # + 1; Faust trusts it to end table recovery, so batched changelogs restore
            # too little or crash (ConsistencyError). One record per batch keeps the
            # answer right (~11 % slower). Real Kafka is not affected.
            producer_max_batch_size=1,
        )
    return conf


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    conf = app_config(settings) | overrides
    return faust.App(settings.app_id, **conf)
