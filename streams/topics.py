"""Every topic the service needs, created at start-up with explicit configs.

- the five inputs: owned upstream; created if missing, so a fresh cluster works;
- `profitwatch-internal`: re-keyed records, referral links and credits, sweep ticks;
- `profitability-alerts`, `profitability-dlq`: delete policy;
- `profitability-snapshots`: `cleanup.policy=compact`, the latest snapshot per customer.

All have `settings.partitions` partitions and `settings.replication_factor` replicas.
The list is pure data, `models.asyncapi.topic_specs`, so the AsyncAPI document
(docs/asyncapi.yaml) describes exactly the topics created here.

Faust creates its own: `<app_id>-customers-changelog` (compacted, the table) and
`<app_id>-__assignor-__leader`. All inputs, the internal topic and the changelog must
have the same partition count (co-partitioning, see streams/processor.py); an existing
topic with another count stops the worker at start-up instead of mis-routing state.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from models.asyncapi import TopicSpec, topic_specs
from models.errors import ConfigError
from models.settings import Settings
from streams.kafka_security import kafka_python_config

log = logging.getLogger(__name__)


def ensure_topics(
    settings: Settings,
    *,
    only: Collection[str] | None = None,
    extra: Iterable[TopicSpec] = (),
    client: str = "admin",
    timeout_s: float = 30.0,
) -> list[str]:
    """Create missing topics; check the partition count of existing co-partitioned ones.
    `only`: of the service's topics, just these names (a notifier's); `extra`: topics
    of its own besides. Returns the names created."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id=f"{settings.app_id}-{client}",
        request_timeout_ms=int(timeout_s * 1000),
        **kafka_python_config(settings.kafka),
    )
    created: list[str] = []
    try:
        specs = [
            spec for spec in topic_specs(settings) if only is None or spec.name in only
        ] + list(extra)
        existing = {
            d["topic"] if "topic" in d else d["name"]: len(d["partitions"])
            for d in admin.describe_topics()
        }
        for spec in specs:
            have = existing.get(spec.name)
            if have is None:
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                spec.name,
                                spec.partitions,
                                spec.replicas,
                                topic_configs=spec.configs,
                            )
                        ]
                    )
                    created.append(spec.name)
                except TopicAlreadyExistsError:
                    pass  # another worker won the race
            elif spec.co_partitioned and have != spec.partitions:
                raise ConfigError(
                    f"topic {spec.name} has {have} partitions, the service needs "
                    f"{spec.partitions} (settings.partitions) on every topic it reads"
                )
    finally:
        admin.close()
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created
