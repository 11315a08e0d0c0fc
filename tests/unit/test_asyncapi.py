"""docs/asyncapi.yaml, the AsyncAPI 3.0 document of the Kafka interface (models/asyncapi.py).

1. It is what ``models.asyncapi`` builds now for the default settings, so it cannot drift
   from the code (and ``profitwatch asyncapi`` writes exactly that).
2. It describes what the service does: every topic ``streams.topics.ensure_topics``
   creates (seen through a stand-in for Kafka's admin client) is a channel with the same
   partitions, replicas and cleanup policy; the changelog channel is the one Faust makes
   for the service's table; payloads are the pydantic models' schemas; the header
   schemas accept the headers models/cloudevents.py and models/deadletter.py write (and
   refuse others); the structured-mode envelope schema agrees with the decoder.
3. The official parser (@asyncapi/parser under Node.js, tools/asyncapi/check.mjs) accepts
   it, and the document of another deployment's settings (SASL, renamed topics, …).
4. The parser rejects broken documents, so the check can fail.
"""

from __future__ import annotations

import copy
import difflib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from jsonschema import Draft7Validator
from kafka.admin import NewTopic
from pydantic import SecretStr

import streams.topics
from models import cloudevents
from models.asyncapi import build, changelog_spec, default_settings, to_yaml
from models.deadletter import dead_letter, kip1034_headers, record_headers
from models.decode import Decoder
from models.errors import RejectedRecord
from models.notifiers import undeliverable_headers
from models.schema import schemas
from models.settings import AlertmanagerSettings, KafkaSecurity, Settings, Topics, WebhookSettings
from streams.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC_FILE = ROOT / "docs" / "asyncapi.yaml"
TOOLS = ROOT / "tools" / "asyncapi"
REGENERATE = "profitwatch asyncapi --defaults --out docs/asyncapi.yaml"
SECRET = "s3cret-Hunter2"

Document = dict[str, Any]


def committed() -> Document:
    data = yaml.safe_load(DOC_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{DOC_FILE} is not a mapping"
    return data


def other_deployment() -> Settings:
    """Settings unlike the defaults in everything the document shows."""
    return default_settings(
        kafka_bootstrap_servers="kafka-a.example:9093, kafka-b.example:9093",
        partitions=12,
        replication_factor=3,
        app_id="pw-eu",
        topics=Topics(orders="shop-orders", snapshots="pw-snapshots", internal="pw-internal"),
        webhook=WebhookSettings(undeliverable_topic="pw-crm-undeliverable"),
        kafka=KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="profitwatch",
            sasl_password=SecretStr(SECRET),
        ),
    )


SETTINGS = {"defaults": default_settings, "other": other_deployment}


# ---- 1. the committed document is current -----------------------------------------


def test_committed_document_is_what_the_code_builds() -> None:
    built = to_yaml(build(default_settings()))
    assert DOC_FILE.is_file(), f"{DOC_FILE} is missing: run `{REGENERATE}`"
    text = DOC_FILE.read_text(encoding="utf-8")
    if text != built:
        diff = difflib.unified_diff(
            text.splitlines(), built.splitlines(), "docs/asyncapi.yaml", "built", lineterm=""
        )
        pytest.fail(
            f"docs/asyncapi.yaml is out of date: run `{REGENERATE}`\n" + "\n".join(list(diff)[:60])
        )


def test_yaml_is_lossless() -> None:
    for make in SETTINGS.values():
        doc = build(make())
        assert yaml.safe_load(to_yaml(doc)) == doc


def test_the_command_writes_the_committed_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    args = build_parser().parse_args(["asyncapi", "--defaults", "--out", str(out)])
    assert args.func(args) == 0
    assert out.read_text(encoding="utf-8") == DOC_FILE.read_text(encoding="utf-8")


def test_the_environment_does_not_leak_into_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    monkeypatch.setenv("PROFITWATCH_PARTITIONS", "7")
    assert build(default_settings()) == committed()


# ---- 2. the document describes what the service does ------------------------------


class _RecordingAdmin:
    """Kafka's admin client, as far as `ensure_topics` uses it, on an empty cluster."""

    def __init__(self, created: list[NewTopic], **_config: Any) -> None:
        self.created = created

    def describe_topics(self) -> list[dict[str, Any]]:
        return []

    def create_topics(self, topics: list[NewTopic]) -> None:
        self.created.extend(topics)

    def close(self) -> None:
        pass


def created_topics(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> list[NewTopic]:
    created: list[NewTopic] = []
    monkeypatch.setattr(
        streams.topics, "KafkaAdminClient", lambda **kw: _RecordingAdmin(created, **kw)
    )
    names = streams.topics.ensure_topics(settings)
    assert names == [t.name for t in created]
    return created


def channels_by_address(doc: Document) -> dict[str, Document]:
    channels = {c["address"]: c for c in doc["channels"].values()}
    assert len(channels) == len(doc["channels"]), "two channels share an address"
    return channels


def kafka_binding(channel: Document) -> tuple[int, int, list[str]]:
    b = channel["bindings"]["kafka"]
    return b["partitions"], b["replicas"], b["topicConfiguration"]["cleanup.policy"]


@pytest.mark.parametrize("which", SETTINGS)
def test_every_created_topic_is_a_channel_alike(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SETTINGS[which]()
    doc = build(settings)
    channels = channels_by_address(doc)
    created = created_topics(settings, monkeypatch)
    assert len(created) == 9
    for topic in created:
        assert topic.name in channels, f"{topic.name} is created but has no channel"
        policy = topic.topic_configs.get("cleanup.policy", "delete")  # Kafka's default
        assert kafka_binding(channels[topic.name]) == (
            topic.num_partitions,
            topic.replication_factor,
            [policy],
        ), topic.name
    # Faust's changelog and the webhook notifier's topic come on top of what the
    # service creates itself (test_the_notifiers_topic_is_a_channel_alike).
    extra = set(channels) - {t.name for t in created}
    assert extra == {changelog_spec(settings).name, settings.webhook.undeliverable_topic}


@pytest.mark.parametrize("which", SETTINGS)
def test_the_changelog_channel_is_fausts(which: str, tmp_path: Path) -> None:
    from streams.agents import Service  # Faust: only for this test

    settings = SETTINGS[which]().model_copy(update={"store": "memory://", "data_dir": tmp_path})
    service = Service(settings)
    topic = service.table.changelog_topic
    replicas = topic.replicas or service.app.conf.topic_replication_factor
    channel = build(settings)["channels"]["changelog"]
    assert channel["address"] == topic.get_topic_name()
    assert topic.compacting and not topic.deleting
    assert kafka_binding(channel) == (topic.partitions, replicas, ["compact"])


def test_operations_per_channel() -> None:
    doc = build(default_settings())
    actions: dict[str, set[str]] = {}
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        actions.setdefault(channel, set()).add(op["action"])
    inputs = ["orders", "invoices", "tickets", "referrals", "sales_activities"]
    assert actions == {
        **{c: {"receive"} for c in inputs},
        # The notifiers read alerts and snapshots, and write the undeliverable alerts.
        **{c: {"send", "receive"} for c in ("alerts", "snapshots")},
        "dlq": {"send"},
        "alerts_undeliverable": {"send"},
        "internal": {"send", "receive"},
        "changelog": {"send", "receive"},
    }
    for name in ("internal", "changelog"):
        assert doc["channels"][name]["tags"] == [{"$ref": "#/components/tags/internal"}]


@pytest.mark.parametrize("which", SETTINGS)
def test_the_notifiers_topic_is_a_channel_alike(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.notify_webhook

    settings = SETTINGS[which]()
    channels = channels_by_address(build(settings))
    created: list[NewTopic] = []
    monkeypatch.setattr(
        streams.topics, "KafkaAdminClient", lambda **kw: _RecordingAdmin(created, **kw)
    )
    streams.notify_webhook.ensure_notifier_topics(settings, settings.webhook)
    assert [t.name for t in created] == [
        settings.topics.alerts,
        settings.webhook.undeliverable_topic,
    ]
    for topic in created:
        assert kafka_binding(channels[topic.name]) == (
            topic.num_partitions,
            topic.replication_factor,
            [topic.topic_configs.get("cleanup.policy", "delete")],
        ), topic.name


class _RecordingConsumer:
    """kafka-python's consumer as the notifiers construct it: only its arguments."""

    made: ClassVar[list[tuple[tuple[Any, ...], dict[str, Any]]]] = []

    def __init__(self, *topics: str, **config: Any) -> None:
        self.made.append((topics, config))


@pytest.mark.parametrize("which", SETTINGS)
def test_the_notifiers_groups_are_the_documents(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streams.notify_alertmanager
    import streams.notify_webhook
    from alerts.webhooks import new_secret

    settings = SETTINGS[which]()
    ops = build(settings)["operations"]

    def documented(op: str) -> list[str]:
        enum: list[str] = ops[op]["bindings"]["kafka"]["groupId"]["enum"]
        return enum

    _RecordingConsumer.made = []
    for module in (streams.notify_webhook, streams.notify_alertmanager):
        monkeypatch.setattr(module, "KafkaConsumer", _RecordingConsumer)
    webhook = WebhookSettings(url="http://127.0.0.1:1/hook", secret=new_secret())
    streams.notify_webhook.Notifier(settings, webhook)._consumer()
    am = AlertmanagerSettings(url="http://127.0.0.1:1")
    streams.notify_alertmanager.AlertmanagerNotifier(settings, am)._consumer_of()
    (wh_topics, wh_config), (_, am_config) = _RecordingConsumer.made
    assert wh_topics == (settings.topics.alerts,)
    assert documented("receive_alerts_notify_webhook") == [wh_config["group_id"]]
    for op in ("receive_alerts_notify_alertmanager", "receive_snapshots_notify_alertmanager"):
        assert documented(op) == [am_config["group_id"]]
    # Three groups: the workers' and one per notifier.
    groups = {
        documented(op)[0] for op, o in ops.items() if o["action"] == "receive" and "bindings" in o
    }
    assert groups == {settings.app_id, wh_config["group_id"], am_config["group_id"]}


def resolve(node: Any, root: Document) -> Any:
    """`node` with every local `$ref` replaced by what it points to (no cycles here)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target, root)
        return {k: resolve(v, root) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [resolve(v, root) for v in node]
    return node


def test_payloads_are_the_models_schemas() -> None:
    doc = committed()
    messages = doc["components"]["messages"]
    for kind, schema in schemas(outputs=True).items():
        payload = resolve(messages[kind]["payload"], doc)
        assert payload == resolve(schema, schema), kind
        assert messages[kind]["contentType"] == "application/json"
    for kind in schemas():  # structured mode: the event is `data`
        message = messages[f"{kind}_cloudevent"]
        assert message["contentType"] == "application/cloudevents+json"
        payload = resolve(message["payload"], doc)
        assert payload["allOf"][1]["properties"]["data"] == resolve(
            schemas()[kind], schemas()[kind]
        )


def message_headers(doc: Document, message: str) -> Document:
    headers = resolve(doc["components"]["messages"][message]["headers"], doc)
    assert isinstance(headers, dict)
    return headers


def written_headers(settings: Settings) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """(message, headers) as the service writes them (models/cloudevents.py)."""
    source = cloudevents.source_of(settings.app_id)
    for kind in ("became_unprofitable", "at_risk", "recovered"):
        alert = {"alert_id": "a-1", "kind": kind, "as_of": "2025-03-01T00:00:00Z"}
        yield "alert", cloudevents.alert_headers(source, alert | {"customer_id": "c-1"})
    snapshot = {"customer_id": "c-1", "as_of": "2025-03-01T00:00:00Z"}
    yield "snapshot", cloudevents.snapshot_headers(source, snapshot, b"{}", 3)
    for customer in ("c-1", None):
        letter = dead_letter(
            RejectedRecord("malformed_json", "not JSON", customer),
            topic="orders",
            partition=None if customer else 2,
            offset=7,
            original=b"{",
            received_at="2025-01-01T00:00:00Z",
        )
        headers = record_headers(letter, source=source, original=b"{", customer_id=customer)
        assert headers[:5] == kip1034_headers(letter)
        yield "dead_letter", headers


@pytest.mark.parametrize("which", SETTINGS)
def test_header_schemas_fit_the_headers_written(which: str) -> None:
    settings = SETTINGS[which]()
    doc = build(settings)
    for message, written in written_headers(settings):
        schema = message_headers(doc, message)
        as_text = {name: value.decode("utf-8") for name, value in written}
        assert len(as_text) == len(written), f"{message}: a header twice"
        assert set(as_text) <= set(schema["properties"]), message
        errors = [e.message for e in Draft7Validator(schema).iter_errors(as_text)]
        assert not errors, f"{message}: {errors}"


@pytest.mark.parametrize("status", [None, 404])
@pytest.mark.parametrize("reason", ["rejected", "exhausted", "invalid_alert"])
def test_the_undeliverable_header_schema_fits_the_headers_written(
    reason: Any, status: int | None
) -> None:
    schema = message_headers(committed(), "undeliverable_alert")
    written = undeliverable_headers(
        reason,
        "HTTP 404",
        topic="profitability-alerts",
        partition=3,
        offset=41,
        attempts=8,
        status=status,
    )
    as_text = {name: value.decode("utf-8") for name, value in written}
    assert len(as_text) == len(written) and set(as_text) == set(schema["properties"])
    assert not [e.message for e in Draft7Validator(schema).iter_errors(as_text)]
    assert not Draft7Validator(schema).is_valid(as_text | {"__streams.errors.exception": "lost"})


def test_the_header_schemas_can_fail() -> None:
    schema = message_headers(committed(), "alert")
    settings = default_settings()
    _, written = next(written_headers(settings))
    as_text = {name: value.decode("utf-8") for name, value in written}
    for broken in (
        as_text | {"ce_type": "com.profitwatch.alert.exploded"},
        {k: v for k, v in as_text.items() if k != "ce_id"},
        as_text | {"ce_source": "/profitwatch/another-app"},
    ):
        assert not Draft7Validator(schema).is_valid(broken), broken


ORDER = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2025-01-01T00:00:00Z",
    "currency": "EUR",
    "order_id": "o-1",
    "revenue": "100.00",
    "cost_of_goods": "60.00",
}
ENVELOPE = {
    "specversion": "1.0",
    "id": "x-1",
    "source": "/shop",
    "type": "com.example.order",
    "datacontenttype": "application/json",
    "data": ORDER,
}


def test_structured_mode_schema_agrees_with_the_decoder() -> None:
    doc = committed()
    schema = resolve(doc["components"]["messages"]["order_cloudevent"]["payload"], doc)
    decoder = Decoder(default_settings())

    def decoded(value: Document) -> bool:
        try:
            decoder.decode("orders", json.dumps(value).encode(), now_us=2**62, structured=True)
        except RejectedRecord:
            return False
        return True

    assert decoded(ENVELOPE) and Draft7Validator(schema).is_valid(ENVELOPE)
    no_data = {k: v for k, v in ENVELOPE.items() if k != "data"}
    for refused in (
        ENVELOPE | {"specversion": "0.3"},
        ENVELOPE | {"id": ""},
        no_data,
        no_data | {"data_base64": "e30="},
        ENVELOPE | {"data": ORDER | {"revenue": -1}},
    ):
        assert not decoded(refused), refused
        assert not Draft7Validator(schema).is_valid(refused), refused


def test_keys_are_customer_ids() -> None:
    doc = committed()
    for name, message in doc["components"]["messages"].items():
        key = message["bindings"]["kafka"]["key"]
        if name == "internal_sweep":
            assert key["type"] == "null"
        elif name == "dead_letter":
            assert key["type"] == ["string", "null"]
        else:
            assert key["type"] == "string", name
            assert "customer" in key["description"], name


def test_server_and_security() -> None:
    servers = committed()["servers"]
    assert list(servers) == ["kafka"]
    assert servers["kafka"]["host"] == "localhost:9092"
    assert servers["kafka"]["protocol"] == "kafka"
    assert "security" not in servers["kafka"]  # PLAINTEXT by default
    other = build(other_deployment())
    assert [s["host"] for s in other["servers"].values()] == [
        "kafka-a.example:9093",
        "kafka-b.example:9093",
    ]
    for server in other["servers"].values():
        assert server["protocol"] == "kafka-secure"
        assert server["security"] == [{"$ref": "#/components/securitySchemes/sasl_scram_sha_512"}]
    assert SECRET not in json.dumps(other)


# ---- 3. and 4. the official parser -------------------------------------------------


def node_check(*files: Path) -> subprocess.CompletedProcess[str]:
    """`node tools/asyncapi/check.mjs FILE...`; fails (never skips) without its tools."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not on PATH: install Node.js >= 18, then run `make install`")
    installed = TOOLS / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not installed.is_file():
        pytest.fail(
            "tools/asyncapi/node_modules is missing: run `make install` "
            "(it runs `npm ci --prefix tools/asyncapi`)"
        )
    wanted = json.loads((TOOLS / "package.json").read_text())["dependencies"]["@asyncapi/parser"]
    have = json.loads(installed.read_text())["version"]
    if have != wanted:
        pytest.fail(f"@asyncapi/parser {have} is installed, {wanted} pinned: run `make install`")
    return subprocess.run(
        [node, str(TOOLS / "check.mjs"), *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_parser_accepts_the_documents(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(to_yaml(build(other_deployment())), encoding="utf-8")
    run = node_check(DOC_FILE, other)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for file in (DOC_FILE, other):
        assert f"{file}: valid AsyncAPI 3.0.0" in run.stdout, output


def broken(doc: Document) -> Iterator[tuple[str, Document, str]]:
    """(name, a broken copy of `doc`, what the parser must say)."""
    d = copy.deepcopy(doc)
    d["channels"]["alerts"]["messages"]["ghost"] = {"$ref": "#/components/messages/ghost"}
    yield "missing-message", d, "'#/components/messages/ghost' does not exist"
    d = copy.deepcopy(doc)
    d["operations"]["send_alerts"]["messages"].append(
        {"$ref": "#/channels/snapshots/messages/snapshot"}
    )
    yield "foreign-message", d, "asyncapi3-operation-messages-from-referred-channel"
    d = copy.deepcopy(doc)
    d["channels"]["snapshots"]["bindings"]["kafka"]["partitions"] = "four"
    yield "bad-binding", d, "partitions"


def test_the_parser_rejects_broken_documents(tmp_path: Path) -> None:
    cases = []
    for name, doc, says in broken(committed()):
        file = tmp_path / f"{name}.yaml"
        file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        cases.append((file, says))
    run = node_check(*(file for file, _ in cases))
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    for file, says in cases:
        assert f"{file}: INVALID" in run.stderr, output
        errors = [line for line in run.stderr.splitlines() if line.startswith(f"{file}:")]
        assert any(says in line and " error " in line for line in errors), output
