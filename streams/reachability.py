"""Waiting for the Kafka cluster at start-up: say that it cannot be reached, and retry.

A worker started before its broker (a compose file, a restarted cluster, a typo in the
address) should neither crash with a client library's traceback nor wait in silence.
It asks each bootstrap server for metadata with a hard timeout, logs every failure with
the reason and the next delay, and backs off up to ``MAX_DELAY_S``.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

from models.errors import ProfitwatchError
from streams.broker_process import metadata_brokers

__all__ = ["BrokerUnreachable", "wait_until_reachable"]

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
PROBE_TIMEOUT_S = 5.0


class BrokerUnreachable(ProfitwatchError):
    """No bootstrap server answered within the time allowed."""


def _probe(server: str) -> str | None:
    """None when ``host:port`` answers a Metadata request, else why not."""
    host, _, port = server.strip().rpartition(":")
    try:
        brokers = metadata_brokers(host or "localhost", int(port), PROBE_TIMEOUT_S)
    except ValueError:
        return f"{server!r} is not host:port"
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if brokers else "it answers but names no broker yet"


def wait_until_reachable(
    bootstrap_servers: str,
    *,
    give_up_after_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once any of the comma-separated servers answers; retry with back-off
    until then, forever when ``give_up_after_s`` is 0, else raise ``BrokerUnreachable``."""
    servers = [s for s in (p.strip() for p in bootstrap_servers.split(",")) if s]
    if not servers:
        raise BrokerUnreachable("no Kafka bootstrap server is configured")
    started = clock()
    delay = FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        reasons = {server: _probe(server) for server in servers}
        if any(reason is None for reason in reasons.values()):
            if attempt > 1:
                log.info("Kafka at %s answers after %d attempts", bootstrap_servers, attempt)
            return
        waited = clock() - started
        why = "; ".join(f"{s}: {r}" for s, r in reasons.items())
        if give_up_after_s and waited + delay > give_up_after_s:
            raise BrokerUnreachable(
                f"Kafka at {bootstrap_servers} is unreachable after {waited:.0f} s "
                f"and {attempt} attempts ({why})"
            )
        log.warning(
            "Kafka at %s is unreachable (%s): retrying in %.1f s (attempt %d, %.0f s so far)",
            bootstrap_servers,
            why,
            delay,
            attempt,
            waited,
        )
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
