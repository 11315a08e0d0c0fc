"""The Faust app, built from `Settings`. Broker-specific client settings live here,
in one place, with the reason for each.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from models.errors import ConfigError
from models.settings import Settings
from streams.faust_private import new_transport
from streams.kafka_security import faust_config

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
    # SASL and TLS (streams/kafka_security.py): Faust hands them to every aiokafka
    # client it makes (consumer, producer, its admin for topic creation).
    conf.update(faust_config(settings.kafka))
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


EXIT_AFTER_CRASH = 70  # EX_SOFTWARE


def exit_after_crash(reason: BaseException) -> None:
    """The process ends now: the crash's shutdown did not finish in time."""
    log.critical("crashed (%r) and not stopped in time: exiting", reason)
    logging.shutdown()
    os._exit(EXIT_AFTER_CRASH)


class App(faust.App):
    """`faust.App` with work to finish before Faust stops its consumer at shutdown
    (`App.on_stop`, a documented override): the service acknowledges what it has
    applied and delivered, so the consumer's last commit covers it and a restart
    does not read it again. Its consumer's fetches wait at most `fetch_max_wait_ms`
    on the broker (Faust fixes 1.5 s; see streams/faust_private.py)."""

    before_stop: Callable[[], Awaitable[object]] | None = None
    fetch_max_wait_ms: int | None = None
    # A crashed worker must exit, so that its supervisor starts a new one: Faust's
    # shutdown after a crash can wait for ever on its consumer's last commit (seen in
    # the chaos test: five minutes, until SIGTERM). After this long it exits hard.
    crash_exit_after_s: float = 30.0

    async def crash(self, reason: BaseException) -> None:
        asyncio.get_running_loop().call_later(self.crash_exit_after_s, exit_after_crash, reason)
        await super().crash(reason)

    def _new_transport(self) -> Any:
        return new_transport(self)

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            try:
                await self.before_stop()
            except Exception:  # the records stay unacked: read again after the restart
                log.exception("could not acknowledge the last records before stopping")
        await super().on_stop()


EXACTLY_ONCE_REFUSED = (
    "processing_guarantee=exactly_once is not supported yet: Faust's transactional "
    "commit does not await the commit's record batches (changed states, snapshots), "
    "which are sent outside its transactions, so outputs would not be in the input's "
    "transaction. Use at_least_once (the default): a redelivered record changes no "
    "state (event ids are deduplicated) and resends its alerts with the same alert_id."
)


def create_app(settings: Settings, **overrides: Any) -> App:
    """The service's Faust app; refuses settings it cannot honour (`ConfigError`)."""
    if settings.processing_guarantee == "exactly_once":
        raise ConfigError(EXACTLY_ONCE_REFUSED)
    conf = app_config(settings) | overrides
    app = App(settings.app_id, **conf)
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    return app
