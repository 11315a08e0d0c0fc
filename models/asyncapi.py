"""The service's Kafka interface as an AsyncAPI 3.0.0 document (`profitwatch asyncapi`).

Pure, like all of models/: a `Settings` in, a plain dict out. Its parts come from the
code that decides them, so the document cannot tell consumers something else than the
service does:

- the topics, their partitions, replicas and cleanup policy: `topic_specs` below, the
  list streams/topics.py creates at start-up (and `changelog_spec`, Faust's table);
- the payload schemas: the pydantic models, through models/schema.py (what
  `profitwatch schema --outputs` prints);
- the headers: CloudEvents' from models/cloudevents.py, the dead-letter ones (KIP-1034)
  from models/deadletter.py.

docs/asyncapi.yaml is this document for the default settings (`default_settings`);
tests/unit/test_asyncapi.py keeps it current and has the official parser
(@asyncapi/parser, tools/asyncapi/) validate it.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from models import cloudevents
from models.deadletter import (
    HEADER_CODE,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TOPIC,
)
from models.errors import REJECTION_CODES, ConfigError
from models.events import EVENT_MODELS
from models.notifiers import HEADER_ATTEMPTS, HEADER_STATUS, UndeliverableReason, group_id
from models.outputs import Alert
from models.schema import schemas
from models.settings import SaslMechanism, Settings, Topics, WebhookSettings

Document = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
# The Faust table of customer states (streams/agents.py TABLE_NAME); Faust names its
# changelog topic `<app_id>-<table>-changelog`.
CHANGELOG_TABLE = "customers"

JSON = "application/json"
# CloudEvents' binary mode (models/cloudevents.py): the content-type of the value.
_DATA_CONTENT_TYPE = cloudevents.DATA_CONTENT_TYPE.decode()

_SCHEMAS = "#/components/schemas/"
_MESSAGES = "#/components/messages/"


# ---- the topics the service creates ------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the service creates it (streams/topics.py) and documents it."""

    name: str
    partitions: int
    replicas: int
    configs: dict[str, str] = field(default_factory=dict)
    co_partitioned: bool = True

    @property
    def cleanup_policy(self) -> str:
        # Not set: the broker's `log.cleanup.policy`, which Kafka defaults to delete.
        return self.configs.get("cleanup.policy", "delete")


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic `streams.topics.ensure_topics` creates when missing, in this order."""
    t, n, r = settings.topics, settings.partitions, settings.replication_factor
    specs = [TopicSpec(name, n, r) for name in t.input_kinds()]
    specs += [
        TopicSpec(t.internal, n, r),
        TopicSpec(t.alerts, n, r, co_partitioned=False),
        TopicSpec(t.snapshots, n, r, {"cleanup.policy": "compact"}, co_partitioned=False),
        TopicSpec(t.dlq, n, r, co_partitioned=False),
    ]
    return specs


def undeliverable_spec(settings: Settings, webhook: WebhookSettings | None = None) -> TopicSpec:
    """The topic of the alerts `profitwatch notify webhook` gave up on, which it creates
    when missing (streams/notify_webhook.py)."""
    name = (webhook or settings.webhook).undeliverable_topic
    return TopicSpec(name, settings.partitions, settings.replication_factor, co_partitioned=False)


def changelog_spec(settings: Settings) -> TopicSpec:
    """The customer table's changelog, which Faust creates: compacted, co-partitioned,
    `topic_replication_factor` replicas (streams/app.py)."""
    return TopicSpec(
        f"{settings.app_id}-{CHANGELOG_TABLE}-changelog",
        settings.partitions,
        settings.replication_factor,
        {"cleanup.policy": "compact"},
    )


# ---- settings ----------------------------------------------------------------------


class _DefaultsOnly(Settings):
    """Settings that read no environment and no file: what docs/asyncapi.yaml shows
    must not depend on the shell that generated it (KAFKA_BOOTSTRAP_SERVERS, …)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def default_settings(**overrides: Any) -> Settings:
    """The defaults (plus `overrides`), ignoring the environment."""
    return _DefaultsOnly(**overrides)


# ---- the document ------------------------------------------------------------------


def build(settings: Settings) -> Document:
    """The AsyncAPI 3.0.0 document of the service run with `settings`."""
    t = settings.topics
    names = [getattr(t, f) for f in Topics.model_fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"topic names must be distinct, got {', '.join(names)}")
    specs = {s.name: s for s in topic_specs(settings)}
    schema_docs, component_schemas = _payload_schemas()
    component_schemas.update(_own_schemas(settings))
    messages: Document = {}
    channels: Document = {}
    operations: Document = {}
    inputs = t.input_kinds()

    for fname in Topics.model_fields:
        name = getattr(t, fname)
        if name in inputs:
            kind = inputs[name]
            schema = schema_docs[kind]
            plain, structured = kind, f"{kind}_cloudevent"
            messages[plain] = _input_message(kind, schema)
            messages[structured] = _structured_message(kind, schema["title"])
            channels[fname] = _channel(
                specs.pop(name),
                f"Input, owned upstream. {_first_line(schema)} The service creates the "
                "topic when it is missing.",
                [plain, structured],
                "input",
            )
            operations[f"receive_{fname}"] = _operation(
                "receive", fname, [plain, structured], f"Consume {kind} events.", settings
            )
    outputs = {t.alerts: "alert", t.snapshots: "snapshot", t.dlq: "dead_letter"}
    for fname in Topics.model_fields:
        name = getattr(t, fname)
        if name in outputs:
            kind = outputs[name]
            headers, summary, description, sent = _OUTPUTS[kind]
            messages[kind] = _output_message(kind, schema_docs[kind], headers, summary)
            channels[fname] = _channel(specs.pop(name), description, [kind], "output")
            operations[f"send_{fname}"] = _operation("send", fname, [kind], sent, settings)

    internal = list(_INTERNAL_MESSAGES)
    messages.update({m: _internal_message(m, *about) for m, about in _INTERNAL_MESSAGES.items()})
    channels["internal"] = _channel(
        specs.pop(t.internal),
        "Internal: the service's own topic; do not produce to it. Re-keyed input records, "
        "referral links and credits between customers, and sweep ticks; compact UTF-8 JSON "
        "whose field `k` gives the kind (docs/contract.md section 2.2).",
        internal,
        "internal",
    )
    for action in ("send", "receive"):
        operations[f"{action}_internal"] = _operation(
            action, "internal", internal, "Internal: the service to itself.", settings
        )
    if specs:  # streams/topics.py creates a topic this document does not know yet
        raise RuntimeError(f"topics without a channel: {', '.join(sorted(specs))}")

    changelog = changelog_spec(settings)
    messages["customer_state"] = _state_message()
    channels["changelog"] = _channel(
        changelog,
        f"Internal, created by Faust: the changelog of the `{CHANGELOG_TABLE}` table, each "
        "customer's ledger state. Listed because it holds the service's state and shares "
        "the co-partitioning; do not produce to it or depend on its format.",
        ["customer_state"],
        "internal",
    )
    for action, text in (
        ("send", "Internal: each changed state, batched at every commit."),
        ("receive", "Internal: read back to restore the table at start-up and rebalances."),
    ):
        operations[f"{action}_changelog"] = _operation(
            action, "changelog", ["customer_state"], text, settings
        )
    _add_notifiers(settings, messages, channels, operations)

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(settings),
        "defaultContentType": JSON,
        "servers": _servers(settings),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(component_schemas.items())),
            "messages": dict(sorted(messages.items())),
            "securitySchemes": _security_schemes(),
            "tags": {
                "input": {"name": "input", "description": "Upstream systems publish here."},
                "output": {"name": "output", "description": "For downstream consumers."},
                "internal": {
                    "name": "internal",
                    "description": "The service's own; not an interface to other systems.",
                },
                "notifier": {
                    "name": "notifier",
                    "description": (
                        "`profitwatch notify …`: the service's own consumers of its outputs, "
                        'each its own process and consumer group (README, "Connecting '
                        'alerting and CRM systems").'
                    ),
                },
            },
        },
    }


def to_yaml(doc: Document) -> str:
    """The document as YAML: keys in the order built, no anchors, prose folded (readable
    diffs of docs/asyncapi.yaml)."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the same sub-dict twice is written twice, not as &id001 / *id001


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Prose as folded blocks, wrapped at the width; everything else as PyYAML likes.
    prose = "\n" in data or (len(data) > 80 and " " in data)
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=">" if prose else None)


_Dumper.add_representer(str, _str)


# ---- parts -------------------------------------------------------------------------


def _info(settings: Settings) -> Document:
    try:
        version = importlib.metadata.version("profitwatch")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        version = "0.0.0"
    n = settings.partitions
    return {
        "title": "profitwatch",
        "version": version,
        "description": (
            "Watches customer profitability as it happens: upstream systems publish "
            "business events to the input topics; the service sends alerts, snapshots "
            "(compacted: the latest per customer) and dead letters.\n\n"
            "Every value is one UTF-8 JSON object. Every record is keyed by customer id "
            "(UTF-8), partitioned with Kafka's default partitioner (murmur2 of the key, "
            "modulo the partition count). The inputs, the internal topic and the changelog "
            f"are co-partitioned: all have {n} partitions (setting `partitions`), and a "
            "worker refuses to start against one with another count.\n\n"
            "Outputs carry CloudEvents 1.0 attributes as `ce_` headers (binary mode). "
            "Inputs are plain JSON values (binary-mode `ce_` headers may come with them) "
            "or CloudEvents in structured mode (content-type "
            f"`{cloudevents.STRUCTURED_CONTENT_TYPE}`, the event in `data`).\n\n"
            f"Faust also creates `{settings.app_id}-__assignor-__leader`, its partition "
            "assignor's topic, not described here. The workers' consumer group is the "
            f"setting `app_id` (`{settings.app_id}`); the notifiers (`profitwatch notify "
            "…`, tag `notifier`) have their own. Topic names follow the settings "
            "(`PROFITWATCH_TOPICS__…`); docs/contract.md is the full contract. "
            "docs/asyncapi.yaml is generated for the default settings by "
            "`profitwatch asyncapi --defaults --out docs/asyncapi.yaml`."
        ),
        "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
    }


_SASL_SCHEMES: dict[SaslMechanism, str] = {
    "PLAIN": "sasl_plain",
    "SCRAM-SHA-256": "sasl_scram_sha_256",
    "SCRAM-SHA-512": "sasl_scram_sha_512",
}


def _servers(settings: Settings) -> Document:
    k = settings.kafka
    hosts = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    # Names of settings only, never their values: no user name or password appears.
    security: list[Document] = []
    if k.uses_sasl:
        security.append(_ref("securitySchemes", _SASL_SCHEMES[k.sasl_mechanism]))
    if k.ssl_certfile is not None:
        security.append(_ref("securitySchemes", "tls_client_certificate"))
    description = (
        "A bootstrap server (setting `kafka_bootstrap_servers`, env "
        f"`KAFKA_BOOTSTRAP_SERVERS`). Connects with `security.protocol={k.security_protocol}`"
        + (f" and `sasl.mechanism={k.sasl_mechanism}`" if k.uses_sasl else "")
        + ". The service also speaks SSL, SASL_PLAINTEXT and SASL_SSL (PLAIN, SCRAM-SHA-256, "
        "SCRAM-SHA-512) with an optional client certificate: settings `kafka` "
        "(models/settings.py `KafkaSecurity`, env `PROFITWATCH_KAFKA__SECURITY_PROTOCOL`, "
        "`…__SASL_MECHANISM`, `…__SASL_USERNAME`, `…__SASL_PASSWORD`, `…__SSL_CAFILE`); "
        "see components.securitySchemes."
    )
    servers: Document = {}
    for i, host in enumerate(hosts, 1):
        server: Document = {
            "host": host,
            # AsyncAPI's protocol names: `kafka-secure` is Kafka over TLS.
            "protocol": "kafka-secure" if k.uses_tls else "kafka",
            "description": description,
        }
        if security:
            server["security"] = security
        servers["kafka" if len(hosts) == 1 else f"kafka-{i}"] = server
    return servers


def _security_schemes() -> Document:
    sasl = (
        "`kafka.security_protocol` SASL_SSL (or SASL_PLAINTEXT) with `kafka.sasl_mechanism` "
        "{0}, `kafka.sasl_username` and `kafka.sasl_password`."
    )
    return {
        "sasl_plain": {"type": "plain", "description": sasl.format("PLAIN")},
        "sasl_scram_sha_256": {"type": "scramSha256", "description": sasl.format("SCRAM-SHA-256")},
        "sasl_scram_sha_512": {"type": "scramSha512", "description": sasl.format("SCRAM-SHA-512")},
        "tls_client_certificate": {
            "type": "X509",
            "description": (
                "`kafka.security_protocol` SSL or SASL_SSL with `kafka.ssl_certfile` (and "
                "`kafka.ssl_keyfile`): a client certificate, for `ssl.client.auth=required`."
            ),
        },
    }


def _channel(spec: TopicSpec, description: str, messages: list[str], tag: str) -> Document:
    return {
        "address": spec.name,
        "title": spec.name,
        "description": description,
        "messages": {m: {"$ref": _MESSAGES + m} for m in messages},
        "tags": [_ref("tags", tag)],
        "bindings": {
            "kafka": {
                "partitions": spec.partitions,
                "replicas": spec.replicas,
                "topicConfiguration": {"cleanup.policy": [spec.cleanup_policy]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _operation(
    action: str,
    channel: str,
    messages: list[str],
    summary: str,
    settings: Settings,
    *,
    group: str | None = None,
    tag: str | None = None,
) -> Document:
    op: Document = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }
    if tag is None and channel in ("internal", "changelog"):
        tag = "internal"
    if tag is not None:
        op["tags"] = [_ref("tags", tag)]
    # The group's (the changelog is read back by assignment, outside the group).
    if action == "receive" and channel != "changelog":
        op["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [group or settings.app_id]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return op


def _key(description: str, schema: Document | None = None) -> Document:
    key = dict(schema or {"type": "string", "minLength": 1, "maxLength": 128})
    key["description"] = description
    return {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}}


_INPUT_KEY = (
    "The `customer_id` of the value (UTF-8; for a referral, the referrer). The service "
    "does not trust it: a record keyed otherwise, or on another partition than that id's, "
    "takes one extra hop through the internal topic before it is applied."
)
_OUTPUT_KEY = "The `customer_id` of the value (UTF-8)."


def _input_message(kind: str, schema: Document) -> Document:
    return {
        "name": kind,
        "title": f"{schema['title']} (plain JSON)",
        "summary": _first_line(schema),
        "contentType": JSON,
        "payload": {"$ref": _SCHEMAS + schema["title"]},
        "bindings": _key(_INPUT_KEY),
    }


def _structured_message(kind: str, title: str) -> Document:
    return {
        "name": f"{kind}_cloudevent",
        "title": f"{title} (CloudEvents structured mode)",
        "summary": f"The same event as a CloudEvent: the {kind} event is `data`.",
        "contentType": cloudevents.STRUCTURED_CONTENT_TYPE,
        "headers": {"$ref": _SCHEMAS + "CloudEventStructuredHeaders"},
        "payload": {"$ref": f"{_SCHEMAS}{title}CloudEvent"},
        "bindings": _key(_INPUT_KEY),
    }


def _output_message(kind: str, schema: Document, headers: str, summary: str) -> Document:
    key = _OUTPUT_KEY
    key_schema = None
    if kind == "dead_letter":
        key = (
            "The customer id when the rejected value parsed far enough to name one, "
            "else the input record's key (any bytes, or none)."
        )
        key_schema = {"type": ["string", "null"]}
    return {
        "name": kind,
        "title": schema["title"],
        "summary": summary,
        "contentType": JSON,
        "headers": {"$ref": _SCHEMAS + headers},
        "payload": {"$ref": _SCHEMAS + schema["title"]},
        "bindings": _key(key, key_schema),
    }


# kind: (headers schema, message summary, channel description, send operation summary)
_OUTPUTS: dict[str, tuple[str, str, str, str]] = {
    "alert": (
        "AlertHeaders",
        "A customer's status changed (docs/contract.md 6.3).",
        "Output: an alert when a customer becomes unprofitable, at risk, or recovers.",
        "Send alerts, at once.",
    ),
    "snapshot": (
        "SnapshotHeaders",
        "A customer's figures and status (docs/contract.md 6.2).",
        "Output, compacted: the latest snapshot of every customer (its key). Sent at "
        "commits (`commit_interval_seconds`), once per changed customer.",
        "Send the snapshots of the customers changed since the last commit.",
    ),
    "dead_letter": (
        "DeadLetterHeaders",
        "A rejected input record and why (docs/contract.md 6.4 and 7).",
        "Output: every input record the contract rejects, with the reason, the original "
        "value and where it was consumed; also as Kafka Streams' dead-letter headers "
        "(KIP-1034).",
        "Send dead letters.",
    ),
}


def _add_notifiers(
    settings: Settings, messages: Document, channels: Document, operations: Document
) -> None:
    """The notifiers' reads (their groups) and the webhook notifier's dead letters."""
    webhook, am = group_id(settings.app_id, "webhook"), group_id(settings.app_id, "alertmanager")
    reads = (
        ("webhook", "alerts", "alert", webhook, "each alert POSTed, signed, to the CRM's URL."),
        (
            "alertmanager",
            "alerts",
            "alert",
            am,
            "the alerts' reasons, for the Alertmanager alerts' annotations.",
        ),
        (
            "alertmanager",
            "snapshots",
            "snapshot",
            am,
            "one Alertmanager alert per customer at risk or unprofitable, kept in step; "
            "read from the start at every assignment.",
        ),
    )
    for name, channel, message, group, summary in reads:
        operations[f"receive_{channel}_notify_{name}"] = _operation(
            "receive",
            channel,
            [message],
            f"`profitwatch notify {name}` (group `{group}`): {summary}",
            settings,
            group=group,
            tag="notifier",
        )
    messages["undeliverable_alert"] = {
        "name": "undeliverable_alert",
        "title": "Undeliverable alert",
        "summary": "An alert the webhook notifier gave up on: the alert record as it was.",
        "contentType": JSON,
        "headers": {"$ref": _SCHEMAS + "UndeliverableAlertHeaders"},
        "payload": {"$ref": _SCHEMAS + "Alert"},
        "bindings": _key(_OUTPUT_KEY),
    }
    channels["alerts_undeliverable"] = _channel(
        undeliverable_spec(settings),
        "Output of `profitwatch notify webhook` (setting `webhook.undeliverable_topic`): "
        "each alert it gave up on — the endpoint refused it for good (a 3xx, or a 4xx "
        "other than 410 and 429), every attempt failed, or the record was no alert — "
        "with the reason. Its group commits past an alert only once it is delivered or "
        "here.",
        ["undeliverable_alert"],
        "notifier",
    )
    operations["send_alerts_undeliverable"] = _operation(
        "send",
        "alerts_undeliverable",
        ["undeliverable_alert"],
        "`profitwatch notify webhook`: an alert it gave up on, before committing past it.",
        settings,
        tag="notifier",
    )


def _internal_message(name: str, title: str, summary: str, schema: str, keyless: bool) -> Document:
    key = (
        _key("None: sent to one explicit partition.", {"type": "null"})
        if keyless
        else _key("The target customer id (UTF-8).")
    )
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": JSON,
        "payload": {"$ref": _SCHEMAS + schema},
        "bindings": key,
    }


# name: (title, summary, payload schema, keyless)
_INTERNAL_MESSAGES: dict[str, tuple[str, str, str, bool]] = {
    "internal_event": (
        "Re-keyed input record",
        "An input record whose key or partition was not its customer's, forwarded there.",
        "InternalEvent",
        False,
    ),
    "internal_link": (
        "Referral link",
        "A referral applied at the referrer, to the referred customer.",
        "InternalLink",
        False,
    ),
    "internal_credit": (
        "Referral credit",
        "A referred customer's order, credited to the referrer.",
        "InternalCredit",
        False,
    ),
    "internal_sweep": (
        "Sweep tick",
        "Re-evaluate this partition's customers (every `sweep_interval_seconds`).",
        "InternalSweep",
        True,
    ),
}


def _state_message() -> Document:
    return {
        "name": "customer_state",
        "title": "Customer state",
        "summary": "A customer's ledger state (internal format, models/codec.py).",
        "contentType": JSON,
        "payload": {
            "type": ["object", "null"],
            "description": (
                "Versioned compact JSON (field `v`, the format version). Null: a tombstone."
            ),
        },
        "bindings": _key("The customer id (UTF-8), the table's key."),
    }


def _payload_schemas() -> tuple[dict[str, Document], Document]:
    """The pydantic models' JSON Schemas (by kind), and component schemas of them all:
    pydantic's `$defs` lifted into components, since a `$ref` in an AsyncAPI document
    resolves against the whole document, not the payload."""
    docs = schemas(outputs=True)
    components: Document = {}
    for doc in docs.values():
        for name, sub in doc.pop("$defs", {}).items():
            if components.get(name, sub) != sub:
                raise ValueError(f"two models define different schemas named {name}")
            components[name] = sub
        components[doc["title"]] = doc
    for value in components.values():
        _relink(value)
    return docs, components


def _relink(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = _SCHEMAS + ref.removeprefix("#/$defs/")
        for v in node.values():
            _relink(v)
    elif isinstance(node, list):
        for v in node:
            _relink(v)


def _own_schemas(settings: Settings) -> Document:
    """Headers, the CloudEvents envelope and the internal records: no pydantic model."""
    text = {"type": "string"}

    def headers(type_: Document, id_: str, time: str, kip1034: Document | None = None) -> Document:
        # What models/cloudevents.py `_headers` writes; KIP-1034's first for dead letters.
        props: Document = dict(kip1034 or {})
        props |= {
            "ce_specversion": {"type": "string", "const": cloudevents.SPECVERSION},
            "ce_id": {"type": "string", "minLength": 1, "description": id_},
            "ce_source": {
                "type": "string",
                "format": "uri-reference",
                "const": cloudevents.source_of(settings.app_id),
                "description": "The application (setting `app_id`), the same from every worker.",
            },
            "ce_type": {"type": "string", **type_},
            "ce_time": {"type": "string", "format": "date-time", "description": time},
            "ce_subject": {"type": "string", "description": "The customer id."},
            "content-type": {"type": "string", "const": _DATA_CONTENT_TYPE},
        }
        return {
            "type": "object",
            "description": (
                ("Kafka Streams' dead-letter headers (KIP-1034), then " if kip1034 else "")
                + "CloudEvents binary mode: the event's attributes as `ce_` headers, the "
                "value is the event's data. Header values are UTF-8 text."
            ),
            "properties": props,
            "required": [
                *(kip1034 or {}),
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "content-type",
            ],
        }

    kip1034: Document = {
        HEADER_CODE: {"type": "string", "enum": list(REJECTION_CODES)},
        HEADER_MESSAGE: dict(text),
        HEADER_TOPIC: {"type": "string", "description": "The source topic."},
        HEADER_PARTITION: {
            "type": "string",
            "pattern": r"^-?\d+$",
            "description": "The source partition, -1 if unknown.",
        },
        HEADER_OFFSET: {
            "type": "string",
            "pattern": r"^-?\d+$",
            "description": "The source offset, -1 if unknown.",
        },
    }
    alert_kinds: tuple[str, ...] = get_args(Alert.model_fields["kind"].annotation)
    uuid5 = "A UUIDv5, the same when the service sends this record again"
    own: Document = {
        "AlertHeaders": headers(
            {"enum": [cloudevents.TYPE_ALERT + k for k in alert_kinds]},
            "The alert's `alert_id` (the same when the alert is sent again).",
            "The alert's `as_of`.",
        ),
        "SnapshotHeaders": headers(
            {"const": cloudevents.TYPE_SNAPSHOT},
            f"{uuid5} (the same state).",
            "The snapshot's `as_of`.",
        ),
        "DeadLetterHeaders": headers(
            {"const": cloudevents.TYPE_DEADLETTER},
            f"{uuid5} (the same rejected record).",
            "When the record was judged (`received_at`).",
            kip1034,
        ),
        "UndeliverableAlertHeaders": {
            "type": "object",
            "description": (
                "Kafka Streams' dead-letter header names (KIP-1034) for where the alert was "
                "consumed and why, then the webhook's. Header values are UTF-8 text."
            ),
            "properties": {
                HEADER_CODE: {
                    "type": "string",
                    "enum": list(get_args(UndeliverableReason)),
                    "description": (
                        "`rejected`: an answer retrying cannot change; `exhausted`: every "
                        "attempt failed; `invalid_alert`: the record was not an alert."
                    ),
                },
                HEADER_MESSAGE: dict(text),
                HEADER_TOPIC: {"type": "string", "description": "The alerts topic."},
                HEADER_PARTITION: kip1034[HEADER_PARTITION],
                HEADER_OFFSET: kip1034[HEADER_OFFSET],
                HEADER_STATUS: {
                    "type": "string",
                    "pattern": r"^(\d{3})?$",
                    "description": "The last HTTP status; empty when no answer came.",
                },
                HEADER_ATTEMPTS: {"type": "string", "pattern": r"^\d+$"},
            },
            "required": [
                HEADER_CODE,
                HEADER_MESSAGE,
                HEADER_TOPIC,
                HEADER_PARTITION,
                HEADER_OFFSET,
                HEADER_STATUS,
                HEADER_ATTEMPTS,
            ],
        },
        "CloudEventStructuredHeaders": {
            "type": "object",
            "description": (
                "With this content-type the value must be a CloudEvents envelope; without "
                "it, a value with `specversion` is read as one too."
            ),
            "properties": {
                "content-type": {"type": "string", "const": cloudevents.STRUCTURED_CONTENT_TYPE}
            },
        },
        "CloudEvent": {
            "type": "object",
            "description": (
                "A CloudEvents 1.0 envelope (JSON format) whose `data` is the event. `id` and "
                "`time` are transport metadata: the event's own `event_id` and `occurred_at` "
                "count. An envelope that does not fit is dead-lettered as `schema_violation`."
            ),
            "properties": {
                "specversion": {"type": "string", "const": cloudevents.SPECVERSION},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1, "format": "uri-reference"},
                "type": {"type": "string", "minLength": 1},
                "time": {"type": "string", "format": "date-time"},
                "subject": dict(text),
                "datacontenttype": {
                    "type": "string",
                    "description": "A JSON media type (`application/json`, `…+json`).",
                },
                "dataschema": {"type": "string", "format": "uri"},
                "data": {"type": "object"},
            },
            "required": ["specversion", "id", "source", "type", "data"],
            "not": {"required": ["data_base64"], "description": "`data` holds the event."},
        },
    }
    for model in EVENT_MODELS.values():
        own[f"{model.__name__}CloudEvent"] = {
            "allOf": [
                {"$ref": _SCHEMAS + "CloudEvent"},
                {
                    "type": "object",
                    "properties": {"data": {"$ref": _SCHEMAS + model.__name__}},
                    "required": ["data"],
                },
            ]
        }
    own.update(_internal_schemas())
    return own


def _internal_schemas() -> Document:
    micros = {"type": "integer", "description": "Microseconds since the Unix epoch (UTC)."}
    src = {"$ref": _SCHEMAS + "InternalSource"}
    ids = {"type": "string", "minLength": 1}

    def record(k: str, description: str, fields: Document, required: list[str]) -> Document:
        return {
            "type": "object",
            "description": description,
            "properties": {"k": {"type": "string", "const": k}, **fields},
            "required": ["k", *required],
        }

    return {
        "InternalSource": {
            "type": "array",
            "description": (
                "[source, offset]: where the record that caused this one was consumed, "
                "`<kind>/<partition>` of an input topic or `internal/<partition>`. Absent "
                "in records written before it existed."
            ),
            "items": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "minItems": 2,
            "maxItems": 2,
        },
        "InternalEvent": record(
            "event",
            "An input record, re-keyed by the customer in its value.",
            {
                "topic": {"type": "string", "description": "The input topic."},
                "value": {"type": "string", "description": "The raw value, as text."},
                "src": src,
            },
            ["topic", "value"],
        ),
        "InternalLink": record(
            "link",
            "Sets the referred customer's `referred_by`; the first link wins.",
            {"referred": ids, "referrer": ids, "at": micros, "id": ids, "src": src},
            ["referred", "referrer", "at", "id"],
        ),
        "InternalCredit": record(
            "credit",
            "`referral_value += amount` at the referrer, dated `at`; idempotent on `id`.",
            {
                "id": ids,
                "referrer": ids,
                "amount": {"type": "string", "description": "A decimal in plain notation."},
                "at": micros,
                "src": src,
            },
            ["id", "referrer", "amount", "at"],
        ),
        "InternalSweep": record(
            "sweep",
            "Re-evaluate the partition's customers at `as_of`, in slices of "
            "`sweep_batch_customers`; a continuation names the customer swept last.",
            {
                "as_of": micros,
                "after": {
                    "type": "string",
                    "description": "A continuation: the slice starts after this customer id.",
                },
            },
            ["as_of"],
        ),
    }


def _ref(section: str, name: str) -> Document:
    return {"$ref": f"#/components/{section}/{name}"}


def _first_line(schema: Document) -> str:
    """The model's docstring without the default topic name it opens with."""
    text: str = schema.get("description", "")
    text = re.sub(r"^`[^`]+`: ", "", text.split("\n\n")[0].strip())
    return text[:1].upper() + text[1:]
