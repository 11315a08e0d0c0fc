"""The service's Kafka security settings (`Settings.kafka`, models/settings.py) as each
client library wants them, in one place: Faust (`broker_credentials`, `ssl_context`),
kafka-python (admin client, `produce`, `tail`), aiokafka, and the start-up probe
(streams/reachability.py).

Every client gets the same `ssl.SSLContext`, built once per configuration: the CA
(or the system's), the client certificate when one is set, TLS 1.2 or later.
"""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any

from models.errors import ConfigError
from models.settings import KafkaSecurity

__all__ = [
    "aiokafka_config",
    "describe",
    "faust_config",
    "kafka_python_config",
    "ssl_context",
]


@cache  # KafkaSecurity is frozen (hashable): one context per configuration
def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of every client, or None for PLAINTEXT and SASL_PLAINTEXT.

    Raises ``ConfigError`` for a file that is not the PEM it should be (or a key that
    does not match its certificate), so that a worker refuses at start-up, before any
    connection, instead of every client failing its handshakes."""
    if not security.uses_tls:
        return None
    cafile = security.ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"kafka.ssl_cafile {cafile}: not a usable CA file ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = security.ssl_check_hostname
    if security.ssl_certfile is not None:
        keyfile = security.ssl_keyfile
        try:
            context.load_cert_chain(str(security.ssl_certfile), str(keyfile) if keyfile else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"kafka.ssl_certfile {security.ssl_certfile}"
                f"{f' / kafka.ssl_keyfile {keyfile}' if keyfile else ''}: not a usable "
                f"client certificate and key ({exc})"
            ) from None
    return context


def _password(security: KafkaSecurity) -> str | None:
    p = security.sasl_password
    return p.get_secret_value() if p is not None else None


def faust_config(security: KafkaSecurity) -> dict[str, Any]:
    """Faust app settings; Faust passes them to each of its aiokafka clients."""
    import faust  # here: `produce` and `tail` use this module and need no Faust

    context = ssl_context(security)
    if security.uses_sasl:
        credentials: Any = faust.SASLCredentials(
            username=security.sasl_username,
            password=_password(security),
            mechanism=security.sasl_mechanism,
            ssl_context=context,  # a context makes it SASL_SSL, none SASL_PLAINTEXT
        )
        return {"broker_credentials": credentials, "ssl_context": context}
    if context is not None:
        return {"broker_credentials": faust.SSLCredentials(context), "ssl_context": context}
    return {}


def kafka_python_config(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient, KafkaProducer and
    KafkaConsumer. The context carries the CA, the client certificate and
    `ssl_check_hostname` (a given `ssl_context` overrides the other `ssl_*` arguments)."""
    conf: dict[str, Any] = {"security_protocol": security.security_protocol}
    context = ssl_context(security)
    if context is not None:
        conf["ssl_context"] = context
    if security.uses_sasl:
        conf |= {
            "sasl_mechanism": security.sasl_mechanism,
            "sasl_plain_username": security.sasl_username,
            "sasl_plain_password": _password(security),
        }
    return conf


def aiokafka_config(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients: the same names as kafka-python's."""
    return kafka_python_config(security)


def describe(security: KafkaSecurity) -> str:
    """For log lines and errors: protocol, mechanism and user, never the password."""
    if security.uses_sasl:
        return (
            f"{security.security_protocol} ({security.sasl_mechanism} as "
            f"{security.sasl_username!r})"
        )
    return security.security_protocol
