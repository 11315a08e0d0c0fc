"""The Faust app, built from `Settings`. Broker-specific client settings live here,
in one place, with the reason for each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from models.settings import Settings
from streams.faust_private import new_transport

log = logging.getLogger(__name__)


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
        "broker_commit_interval": settings.commit_interval_seconds,
        "broker_commit_every": settings.commit_every_records,
        # A new group reads input from the start: nothing upstream published is skipped.
        "consumer_auto_offset_reset": "earliest",
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        "web_host": settings.web_bind,
        # Records held for their turn (section 9) are unacked by design: Faust must not
        # wait for them on a rebalance or at shutdown (the revoke handler drops them).
        "stream_wait_empty": False,
        "broker_session_timeout": settings.session_timeout_seconds,
        "broker_heartbeat_interval": settings.heartbeat_interval_seconds,
    }
    if settings.broker_kind == "tansu":
        conf.update(
            # tansu holds a JoinGroup for half the session timeout: 10 s would cost
            # 5 s per start and per rebalance. Real Kafka refuses sessions below
            # group.min.session.timeout.ms (6 s), so only here.
            broker_session_timeout=4.0,
            broker_heartbeat_interval=1.0,
            # tansu answers ListOffsets "latest" with the base offset of the last batch
            # + 1; Faust trusts it to end table recovery, so batched changelogs restore
            # too little or crash (ConsistencyError). One record per batch keeps the
            # answer right (~11 % slower). Real Kafka is not affected.
            producer_max_batch_size=1,
        )
    return conf


class App(faust.App):
    """`faust.App` with work to finish before Faust stops its consumer at shutdown
    (`App.on_stop`, a documented override): the service acknowledges what it has
    applied and delivered, so the consumer's last commit covers it and a restart
    does not read it again. Its consumer's fetches wait at most `fetch_max_wait_ms`
    on the broker (Faust fixes 1.5 s; see streams/faust_private.py)."""

    before_stop: Callable[[], Awaitable[object]] | None = None
    fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        return new_transport(self, self.fetch_max_wait_ms)

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            try:
                await self.before_stop()
            except Exception:  # the records stay unacked: read again after the restart
                log.exception("could not acknowledge the last records before stopping")
        await super().on_stop()


def create_app(settings: Settings, **overrides: Any) -> App:
    conf = app_config(settings) | overrides
    app = App(settings.app_id, **conf)
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app
