"""docker-compose.yml, checked without a Docker engine (these machines have none).

1. It is valid against the Compose Specification's JSON schema: the copy check-jsonschema
   ships as package data (its builtin ``vendor.compose-spec``, read as a file: none of the
   package's code runs), validated by the validator of the draft the schema declares
   (2020-12 in the copies here, not Draft 7).
2. Every variable the ``worker`` service sets is one ``models.settings.Settings`` reads,
   and its value reaches that setting.
3. The ``kafka`` service is the tests' broker: the image of the POM's Kafka version, with
   the settings of ``streams.apache_kafka.BROKER_SETTINGS``.
4. The operations kit (ops/) and the notifiers: every service is there, each pulled image
   pinned to a version, every file mounted exists in the repository, Prometheus scrapes
   the worker's service name and port and alerts the alertmanager service, Grafana reads
   Prometheus and the dashboard, and the notifiers run `profitwatch notify` commands the
   CLI parses, with no secret written in the file.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache, reduce
from pathlib import Path
from typing import Any, TypeGuard

import pytest
import yaml
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import AliasChoices, BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource

from models.settings import Settings
from streams.apache_kafka import BROKER_SETTINGS, kafka_version, server_properties
from streams.cli import build_parser, cmd_notify_alertmanager, cmd_notify_webhook

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_DISTRIBUTION = "check-jsonschema"
SCHEMA_FILE = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"

Document = dict[str, Any]


def load_compose() -> Document:
    """A fresh copy of docker-compose.yml, parsed."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a mapping"
    return data


def service(name: str) -> Document:
    services = load_compose().get("services") or {}
    assert name in services, f"docker-compose.yml has no {name!r} service"
    found = services[name]
    assert isinstance(found, dict)
    return found


def _as_passed(name: str, value: object) -> str:
    """An environment value as Compose hands it to the container."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise AssertionError(
        f"{name}: {value!r} comes from the host's environment (or is no scalar): "
        "the test cannot check it"
    )


def service_env(svc: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (a mapping or a list of KEY=VALUE) as strings."""
    raw = svc.get("environment") or {}
    items: list[tuple[str, object]] = []
    if isinstance(raw, list):
        for entry in raw:
            key, sep, text = str(entry).partition("=")
            items.append((key, text if sep else None))
    else:
        items = [(str(key), value) for key, value in raw.items()]
    env: dict[str, str] = {}
    for name, value in items:
        assert name not in env, f"{name} is set twice"
        env[name] = _as_passed(name, value)
    return env


# --- 1. the Compose Specification ---


@cache
def compose_schema() -> Document:
    dist = importlib.metadata.distribution(SCHEMA_DISTRIBUTION)
    shipped = {str(file) for file in dist.files or []}
    assert SCHEMA_FILE in shipped, f"{SCHEMA_DISTRIBUTION} {dist.version} ships no {SCHEMA_FILE}"
    schema = json.loads(Path(str(dist.locate_file(SCHEMA_FILE))).read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def compose_validator() -> Validator:
    schema = compose_schema()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _all_errors(errors: list[SchemaError]) -> Iterator[SchemaError]:
    """The errors with those under each oneOf/anyOf they came from."""
    for error in errors:
        yield error
        yield from _all_errors(list(error.context or []))


def test_schema_is_the_compose_specification() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert "services" in schema["properties"]
    # The validator is the one of the draft the schema declares, not a fallback.
    cls = validator_for(schema)
    assert cls.META_SCHEMA["$id"].rstrip("#") == schema["$schema"].rstrip("#")
    cls.check_schema(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    errors = sorted(compose_validator().iter_errors(load_compose()), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def _setting(path: tuple[str, ...], value: object) -> Callable[[Document], None]:
    def mutate(doc: Document) -> None:
        parent = reduce(lambda node, key: node[key], path[:-1], doc)
        parent[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _setting(("services", "worker", "ports"), "not-a-list"),
            "$.services.worker.ports 'not-a-list' is not of type 'array'",
            id="ports-not-a-list",
        ),
        pytest.param(_setting(("servics",), {}), "'servics'", id="unknown-top-level-key"),
        pytest.param(
            _setting(("services", "worker", "portz"), ["6066:6066"]),
            "'portz'",
            id="unknown-service-key",
        ),
        pytest.param(
            _setting(("services", "worker", "depends_on", "kafka", "condition"), "healthy"),
            "$.services.worker.depends_on.kafka.condition 'healthy' is not one of",
            id="unknown-depends-on-condition",
        ),
    ],
)
def test_a_broken_compose_file_is_rejected(
    mutate: Callable[[Document], None], expected: str
) -> None:
    broken = copy.deepcopy(load_compose())
    mutate(broken)
    errors = list(compose_validator().iter_errors(broken))
    assert errors, "the validator accepted a broken compose file"
    found = [f"{e.json_path} {e.message}" for e in _all_errors(errors)]
    assert any(expected in line for line in found), found


# --- 2. the worker's environment ---


def _norm(name: str) -> str:
    return name if Settings.model_config.get("case_sensitive", False) else name.upper()


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def settings_env_names() -> dict[str, tuple[str, ...]]:
    """Every environment variable Settings reads -> the path of the field it sets.

    A field is ``<env_prefix><NAME>`` unless it has a validation alias (then its alias
    choices, without the prefix, as pydantic-settings does); a field of a nested model
    is its parent's variable, ``env_nested_delimiter``, its name.
    """
    config = Settings.model_config
    prefix = config.get("env_prefix", "")
    delimiter = config.get("env_nested_delimiter") or ""
    names: dict[str, tuple[str, ...]] = {}

    def walk(model: type[BaseModel], path: tuple[str, ...], base: str) -> None:
        for name, info in model.model_fields.items():
            alias = info.validation_alias if not path else None
            if isinstance(alias, AliasChoices):
                envs = [choice for choice in alias.choices if isinstance(choice, str)]
            elif isinstance(alias, str):
                envs = [alias]
            else:
                envs = [base + name]
            annotation = info.annotation
            for env in envs:
                names[_norm(env)] = (*path, name)
                if delimiter and _is_model(annotation):
                    walk(annotation, (*path, name), env + delimiter)

    walk(Settings, (), prefix)
    return names


def field_at(path: tuple[str, ...]) -> FieldInfo:
    model: Any = Settings
    info: FieldInfo | None = None
    for part in path:
        info = model.model_fields[part]
        model = info.annotation
    assert info is not None
    return info


def test_settings_env_names_are_derived_as_pydantic_settings_reads_them() -> None:
    names = settings_env_names()
    assert names["KAFKA_BOOTSTRAP_SERVERS"] == ("kafka_bootstrap_servers",)
    assert names["PROFITWATCH_KAFKA_BOOTSTRAP_SERVERS"] == ("kafka_bootstrap_servers",)
    assert names["PROFITWATCH_TOPICS__ORDERS"] == ("topics", "orders")
    assert names["PROFITWATCH_WEB_PORT"] == ("web_port",)
    assert "PROFITWATCH_TOPICS__NO_SUCH_TOPIC" not in names
    assert "WEB_PORT" not in names


def test_worker_sets_only_variables_the_worker_reads() -> None:
    env = service_env(service("worker"))
    assert env, "the worker service sets no environment"
    names = settings_env_names()
    unread = sorted(name for name in env if _norm(name) not in names)
    assert not unread, f"the worker reads none of: {', '.join(unread)}"


def _clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _norm(Settings.model_config.get("env_prefix", ""))
    read = settings_env_names()
    for name in list(os.environ):
        if _norm(name).startswith(prefix) or _norm(name) in read:
            monkeypatch.delenv(name)


def test_worker_variables_reach_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = service_env(service("worker"))
    names = settings_env_names()
    _clear_settings_env(monkeypatch)
    for name, value in env.items():
        # Alone, the variable is seen by pydantic-settings' environment source.
        with monkeypatch.context() as alone:
            alone.setenv(name, value)
            assert EnvSettingsSource(Settings)(), f"pydantic-settings reads nothing from {name}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    for name, value in env.items():
        path = names.get(_norm(name))
        assert path is not None, f"{name} is no variable Settings reads"
        annotation = field_at(path).annotation
        assert annotation is not None
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            expected = adapter.validate_strings(value)
        except PydanticError:  # a complex field: pydantic-settings decodes its JSON
            expected = adapter.validate_json(value)
        got = reduce(getattr, path, settings)
        assert got == expected, f"{name}={value!r}: Settings.{'.'.join(path)} is {got!r}"


# --- 3. the Kafka service ---

# KAFKA_ variables the apache/kafka image keeps for itself (JVM and log4j options) instead
# of turning them into server.properties.
IMAGE_VARIABLES = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    }
)

# Set by every run of the tests' broker to its own ports and dirs (server_properties), so
# compose sets its own values for them.
PER_RUN = frozenset(server_properties("localhost", 9092, 9093, Path("logs")).keys()) - set(
    BROKER_SETTINGS
)

# BROKER_SETTINGS keys whose compose value must differ, and why.
DIFFERS_IN_COMPOSE: dict[str, str] = {
    "listener.security.protocol.map": (
        "compose has a third listener, EXTERNAL, published on the host's loopback; the "
        "test broker's entries must still be in its map"
    ),
}


def kafka_properties(env: Mapping[str, str]) -> dict[str, str]:
    """The server.properties the apache/kafka image makes of a container's KAFKA_ variables:
    the prefix dropped, lower case, underscores as dots."""
    props: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in IMAGE_VARIABLES:
            continue
        key = name.removeprefix("KAFKA_")
        # Runs of underscores stand for "_" and "-" in the image's mapping: none of the
        # settings here has one, so they are refused rather than guessed.
        assert "__" not in key, f"{name}: a property with '_' or '-' needs a mapping here"
        props[key.lower().replace("_", ".")] = value
    return props


def _protocol_map(value: str) -> dict[str, str]:
    return dict(entry.split(":", 1) for entry in value.split(","))


def _listener_names(value: str) -> set[str]:
    return {listener.split("://", 1)[0] for listener in value.split(",")}


def test_kafka_env_maps_to_properties() -> None:
    env = {"KAFKA_LOG_SEGMENT_BYTES": "1", "KAFKA_HEAP_OPTS": "-Xmx1g", "CLUSTER_ID": "x"}
    assert kafka_properties(env) == {"log.segment.bytes": "1"}


def test_kafka_image_is_the_poms_kafka_version() -> None:
    version = kafka_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert service("kafka")["image"] == f"apache/kafka:{version}"


def test_kafka_service_has_the_test_brokers_settings() -> None:
    assert set(DIFFERS_IN_COMPOSE) <= set(BROKER_SETTINGS), "a stale DIFFERS_IN_COMPOSE key"
    props = kafka_properties(service_env(service("kafka")))
    wrong = {
        key: {"compose": props.get(key), "tests": want}
        for key, want in BROKER_SETTINGS.items()
        if key not in DIFFERS_IN_COMPOSE and props.get(key) != want
    }
    assert not wrong, f"the kafka service differs from BROKER_SETTINGS: {wrong}"
    # Kafka 4 refuses to start with segments under 1 MiB.
    assert int(props["log.segment.bytes"]) >= 1024 * 1024


def test_kafka_service_sets_only_the_test_brokers_settings_and_its_own_listeners() -> None:
    props = kafka_properties(service_env(service("kafka")))
    assert {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"} == PER_RUN
    extra = props.keys() - BROKER_SETTINGS.keys()
    assert extra == PER_RUN, f"compose-only settings: {sorted(extra - PER_RUN)}; " + (
        f"missing: {sorted(PER_RUN - extra)}"
    )


def test_kafka_service_listeners_extend_the_test_brokers() -> None:
    props = kafka_properties(service_env(service("kafka")))
    protocols = _protocol_map(props["listener.security.protocol.map"])
    assert _protocol_map(BROKER_SETTINGS["listener.security.protocol.map"]).items() <= (
        protocols.items()
    )
    listeners = _listener_names(props["listeners"])
    assert listeners == protocols.keys(), "every listener has a protocol, no other has one"
    assert _listener_names(props["advertised.listeners"]) <= listeners
    assert props["controller.listener.names"] in listeners
    assert props["inter.broker.listener.name"] in _listener_names(props["advertised.listeners"])
    assert props["controller.quorum.voters"].startswith(f"{props['node.id']}@")


# --- 4. the operations kit and the notifiers ---

# Official images of the kit, each pinned to a release.
KIT_IMAGES = {
    "prometheus": "prom/prometheus",
    "alertmanager": "prom/alertmanager",
    "grafana": "grafana/grafana",
}
NOTIFIERS = ("notify-alertmanager", "notify-webhook")
RELEASE_TAG = re.compile(r"v?\d+\.\d+\.\d+")
# Variables whose value must never be written in the file: passed through from the shell.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PASSWD|CREDENTIAL", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def services() -> dict[str, Document]:
    found = load_compose().get("services") or {}
    assert isinstance(found, dict)
    return found


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${NAME}`` and ``${NAME:-default}``, from ``env``."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1), m.group(2) or ""), text)


def raw_env(svc: Mapping[str, Any]) -> dict[str, object]:
    """A service's ``environment``; None for a variable passed through from the shell."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        pairs = [str(entry).partition("=") for entry in raw]
        return {key: (text if sep else None) for key, sep, text in pairs}
    return {str(key): value for key, value in raw.items()}


def bind_mounts(svc: Mapping[str, Any]) -> dict[str, Path]:
    """A service's bind mounts: container path -> the path in this repository."""
    mounts: dict[str, Path] = {}
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = str(volume["source"]), str(volume["target"])
        else:
            source, target, *_ = str(volume).split(":")
            if not source.startswith((".", "/")):
                continue  # a named volume
        mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


def host_path(svc: Mapping[str, Any], container_path: str) -> Path:
    """The repository file a container path of the service is mounted from."""
    for target, source in sorted(bind_mounts(svc).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is mounted from no file of the repository")


def flag(svc: Mapping[str, Any], name: str) -> str:
    """The value of ``--name=value`` in a service's command."""
    for arg in svc.get("command") or []:
        key, sep, value = str(arg).partition("=")
        if sep and key == name:
            return value
    raise AssertionError(f"the command sets no {name}: {svc.get('command')}")


def test_the_kit_and_the_notifiers_are_services() -> None:
    missing = {*KIT_IMAGES, *NOTIFIERS, "worker", "kafka"} - services().keys()
    assert not missing, f"docker-compose.yml has no {sorted(missing)}"


def test_every_pulled_image_is_pinned_to_a_release() -> None:
    built = service("worker")
    for name, svc in services().items():
        image = str(svc.get("image", ""))
        if "build" in svc:  # built here, from this repository's Dockerfile
            assert svc["build"] == built["build"] and image == built["image"], name
            continue
        repository, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{name}: {image!r} has no tag"
        assert tag != "latest" and RELEASE_TAG.fullmatch(tag), f"{name}: {image!r} is unpinned"
        if name in KIT_IMAGES:
            assert repository == KIT_IMAGES[name], f"{name}: not the official image"


def test_every_mounted_file_exists_in_the_repository() -> None:
    mounted = 0
    for name, svc in services().items():
        for target, source in bind_mounts(svc).items():
            assert source.exists(), f"{name}: {source} (mounted on {target}) does not exist"
            assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
            mounted += 1
    assert mounted >= 6, "the kit's configs are not mounted"


def test_prometheus_scrapes_the_worker_by_service_name_and_port() -> None:
    prometheus = service("prometheus")
    config_path = flag(prometheus, "--config.file")
    config = yaml.safe_load(host_path(prometheus, config_path).read_text(encoding="utf-8"))
    assert host_path(prometheus, config_path) == ROOT / "ops/prometheus/prometheus.yml"
    worker_env = service_env(service("worker"))
    port = worker_env["PROFITWATCH_WEB_PORT"]
    assert worker_env["PROFITWATCH_WEB_BIND"] == "0.0.0.0", "the worker listens on loopback only"
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "profitwatch"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"worker:{port}"]
    # Its rules: relative to the config file in the container, and mounted there.
    config_dir = Path(config_path).parent
    rules = [host_path(prometheus, str(config_dir / f)) for f in config["rule_files"]]
    assert rules == [ROOT / "ops/prometheus/rules.yml"]
    # Its alerts go to the alertmanager service, on Alertmanager's port.
    (alerting,) = config["alerting"]["alertmanagers"]
    assert [t for s in alerting["static_configs"] for t in s["targets"]] == ["alertmanager:9093"]
    assert "alertmanager" in services()


def test_alertmanager_and_grafana_read_the_kits_files() -> None:
    alertmanager = service("alertmanager")
    am_config = host_path(alertmanager, flag(alertmanager, "--config.file"))
    assert am_config == ROOT / "ops/alertmanager/alertmanager.yml"
    grafana = service("grafana")
    provisioning = "/etc/grafana/provisioning"
    datasources = host_path(grafana, f"{provisioning}/datasources/prometheus.yml")
    (prometheus,) = [
        d
        for d in yaml.safe_load(datasources.read_text(encoding="utf-8"))["datasources"]
        if d["type"] == "prometheus"
    ]
    assert prometheus["url"] == "http://prometheus:9090"
    providers = host_path(grafana, f"{provisioning}/dashboards/profitwatch.yml")
    (provider,) = yaml.safe_load(providers.read_text(encoding="utf-8"))["providers"]
    dashboard = f"{provider['options']['path']}/profitwatch-dashboard.json"
    assert host_path(grafana, dashboard) == ROOT / "ops/grafana/profitwatch-dashboard.json"
    home = raw_env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, str(home)).is_file()


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, svc in services().items():
        for key, value in raw_env(svc).items():
            if SECRET_NAME.search(key):
                assert value is None or _VARIABLE.fullmatch(str(value)), (
                    f"{name}: {key} has a value in the file; pass it through from the shell"
                )


@pytest.mark.parametrize("name", NOTIFIERS)
def test_the_notifiers_read_the_workers_broker_and_only_settings_variables(name: str) -> None:
    svc = service(name)
    env = raw_env(svc)
    names = settings_env_names()
    unread = sorted(key for key in env if _norm(key) not in names)
    assert not unread, f"{name}: profitwatch reads none of {unread}"
    worker_env = service_env(service("worker"))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == worker_env["KAFKA_BOOTSTRAP_SERVERS"]
    depends = svc["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert "worker" in depends, f"{name} should start with the worker, which creates the topics"


def test_the_webhook_notifier_runs_only_with_the_crm_profile() -> None:
    svc = service("notify-webhook")
    assert svc["profiles"] == ["crm"]
    assert raw_env(svc)["PROFITWATCH_WEBHOOK__SECRET"] is None  # from the shell
    url = "https://crm.example.com/hooks/profitwatch"
    argv = [interpolate(str(a), {"PROFITWATCH_WEBHOOK__URL": url}) for a in svc["command"]]
    args = build_parser().parse_args(argv)
    assert args.func is cmd_notify_webhook and args.url == url
    # Unset, the URL is empty (no Compose warning): the notifier refuses it and says why.
    assert interpolate(str(svc["command"][-1]), {}) == ""
    for other, other_svc in services().items():
        if other != "notify-webhook":
            assert "crm" not in (other_svc.get("profiles") or []), other


def test_the_alertmanager_notifier_posts_to_the_alertmanager_service() -> None:
    svc = service("notify-alertmanager")
    assert "profiles" not in svc, "it runs with `docker compose up`"
    assert svc["command"] == ["notify", "alertmanager", "--url", "http://alertmanager:9093"]
    assert "alertmanager" in svc["depends_on"]
    args = build_parser().parse_args(svc["command"])
    assert args.func is cmd_notify_alertmanager and args.url == "http://alertmanager:9093"


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("notify-alertmanager", "PROFITWATCH_ALERTMANAGER__METRICS_PORT"),
        ("notify-webhook", "PROFITWATCH_WEBHOOK__METRICS_PORT"),
    ],
)
def test_prometheus_scrapes_each_notifier_on_its_metrics_port(name: str, variable: str) -> None:
    env = raw_env(service(name))
    port = env[variable]
    assert str(env["PROFITWATCH_WEB_BIND"]) == "0.0.0.0", f"{name} listens on loopback only"
    prometheus = service("prometheus")
    config_path = host_path(prometheus, flag(prometheus, "--config.file"))
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == f"profitwatch-{name}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [t for static in job["static_configs"] for t in static["targets"]] == [f"{name}:{port}"]
