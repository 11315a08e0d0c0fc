"""Waiting for the Kafka cluster at start-up: say that it cannot be reached, and retry.

A worker started before its broker (a compose file, a restarted cluster, a typo in the
address) should neither crash with a client library's traceback nor wait in silence.
It asks each bootstrap server for metadata with a hard timeout, logs every failure with
the reason and the next delay, and backs off up to ``MAX_DELAY_S``.

With TLS (``SSL``, ``SASL_SSL``) the probe connects with the clients' own SSLContext,
so a broker whose certificate the CA does not vouch for is reported here. With SASL it
authenticates first (a SASL listener answers nothing else before), with the clients'
mechanism and credentials. A broker that refuses those is no broker that is not up
yet: the start ends at once with the broker's reason (``BrokerRefusedLogin``). This
matters because the clients hide it: kafka-python 3.0, which creates the topics next,
reports a refused login as "socket disconnected" until its 30 s bootstrap timeout.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

from models.errors import ProfitwatchError
from models.settings import KafkaSecurity
from streams.broker_process import ClosedByBroker, SaslLogin, SaslRefused, metadata_brokers
from streams.kafka_security import describe, ssl_context

__all__ = ["BrokerRefusedLogin", "BrokerUnreachable", "wait_until_reachable"]

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
PROBE_TIMEOUT_S = 5.0


class BrokerUnreachable(ProfitwatchError):
    """No bootstrap server answered within the time allowed."""


class BrokerRefusedLogin(ProfitwatchError):
    """A bootstrap server refused the SASL mechanism or credentials."""


def _login(security: KafkaSecurity) -> SaslLogin | None:
    if not security.uses_sasl:
        return None
    assert security.sasl_username is not None and security.sasl_password is not None
    return SaslLogin(
        security.sasl_mechanism, security.sasl_username, security.sasl_password.get_secret_value()
    )


def _probe(server: str, security: KafkaSecurity) -> str | None:
    """None when ``host:port`` answers a Metadata request, else why not. Raises
    ``BrokerRefusedLogin`` when it refuses the SASL login."""
    host, _, port_text = server.strip().rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        return f"{server!r} is not host:port"
    try:
        brokers = metadata_brokers(
            host or "localhost",
            port,
            PROBE_TIMEOUT_S,
            ssl_context=ssl_context(security),
            sasl=_login(security),
        )
    except SaslRefused as exc:
        raise BrokerRefusedLogin(
            f"Kafka at {server} refused the login with {describe(security)}: {exc}"
        ) from None
    except ClosedByBroker as exc:
        # What a TLS or SASL listener does with a client that does not speak it.
        wants = {
            (False, False): "TLS or SASL",
            (False, True): "TLS",
            (True, False): "SASL",
        }.get((security.uses_tls, security.uses_sasl))
        hint = f": does it want {wants}?" if wants else ""
        return f"{exc}{hint} (kafka.security_protocol is {security.security_protocol})"
    except (OSError, struct.error, UnicodeDecodeError) as exc:  # ssl.SSLError is an OSError
        return f"{type(exc).__name__}: {exc}"
    return None if brokers else "it answers but names no broker yet"


def wait_until_reachable(
    bootstrap_servers: str,
    *,
    security: KafkaSecurity | None = None,
    give_up_after_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once any of the comma-separated servers answers; retry with back-off
    until then, forever when ``give_up_after_s`` is 0, else raise ``BrokerUnreachable``.
    ``security``: the clients' SASL/TLS settings (PLAINTEXT without); a server that
    refuses the SASL login raises ``BrokerRefusedLogin`` at once."""
    security = security or KafkaSecurity()
    servers = [s for s in (p.strip() for p in bootstrap_servers.split(",")) if s]
    if not servers:
        raise BrokerUnreachable("no Kafka bootstrap server is configured")
    started = clock()
    delay = FIRST_DELAY_S
    attempt = 0
    while True:
        attempt += 1
        reasons = {server: _probe(server, security) for server in servers}
        if any(reason is None for reason in reasons.values()):
            if attempt > 1:
                log.info("Kafka at %s answers after %d attempts", bootstrap_servers, attempt)
            if security.security_protocol != "PLAINTEXT":
                log.info("Kafka at %s: connecting with %s", bootstrap_servers, describe(security))
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
