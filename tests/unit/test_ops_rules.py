"""The operations kit (ops/), checked with the tools that will read it.

1. Prometheus's own promtool checks the alert rules and unit-tests them
   (ops/prometheus/rules_test.yml: every rule firing and not firing) and checks
   ops/prometheus/prometheus.yml; amtool, when installed, checks the Alertmanager
   config and its routes (the service's alerts to "operations", the customers' to
   "customers"). A missing promtool fails: `make install` installs it.
2. Every metric the rules and the Grafana dashboard use is one the worker exposes: the
   names are compared with the samples of a real `streams.metrics.Metrics` exposition,
   every collector registered (the consumer on fakes), so a histogram is only reachable
   as `_bucket`, `_sum` and `_count` and a counter as `_total`; their label names too.
3. The dashboard is valid JSON, each panel's queries parse (promtool, as recording
   rules) and use the provisioned Prometheus data source.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from models.contiguity import Contiguity
from models.group_order import GroupOrder
from models.settings import Settings
from streams.metrics import Metrics, Tallies

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "rules.yml"
RULES_TEST = OPS / "prometheus" / "rules_test.yml"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = OPS / "alertmanager" / "alertmanager.yml"
DASHBOARD = OPS / "grafana" / "profitwatch-dashboard.json"
DATASOURCES = OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

JOB = "profitwatch"
# Series Prometheus makes itself for each target of the job.
PROMETHEUS_SERIES = frozenset({"up"})
TARGET_LABELS = frozenset({"job", "instance"})
# Grafana's variables, as Prometheus would see them once Grafana substituted them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}
SEVERITIES = frozenset({"critical", "warning"})


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: run `make install` (it installs Debian's {package} "
            f"package, which ships {name})",
            pytrace=False,
        )
    return found


def amtool() -> str:
    found = shutil.which("amtool")
    if found is None:
        pytest.skip("amtool is not installed: run `make install` (prometheus-alertmanager)")
    return found


def run(*argv: str) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{output}"
    return output


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- 1. promtool and amtool ---


def test_promtool_checks_the_rules() -> None:
    out = run(tool("promtool", "prometheus"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out, out


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    out = run(tool("promtool", "prometheus"), "test", "rules", str(RULES_TEST))
    assert "SUCCESS" in out, out


def test_promtool_checks_the_prometheus_config() -> None:
    out = run(tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS_CONFIG))
    assert "is valid prometheus config file syntax" in out, out
    assert f"SUCCESS: {len(alert_rules())} rules found" in out, "the config has no rules.yml"


def test_amtool_checks_the_alertmanager_config() -> None:
    out = run(amtool(), "check-config", str(ALERTMANAGER_CONFIG))
    assert "SUCCESS" in out, out


def routes_to(receiver: str, labels: dict[str, str]) -> None:
    run(
        amtool(),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *(f"{k}={v}" for k, v in labels.items()),
    )


def test_the_services_alerts_route_to_operations() -> None:
    for rule in alert_rules():
        routes_to("operations", {"alertname": rule["alert"], **rule["labels"]})


def test_the_customers_alerts_route_to_customers() -> None:
    """Each alert `profitwatch notify alertmanager` makes (alerts/alertmanager.py)."""
    made = pytest.importorskip("alerts.alertmanager")
    assert set(made.ALERTNAMES.values()) == set(made.SEVERITIES)
    for alertname, severity in made.SEVERITIES.items():
        labels = {"alertname": alertname, "customer_id": "c-17", "severity": severity}
        routes_to("customers", labels)


def test_other_alerts_route_to_default() -> None:
    routes_to("default", {"alertname": "Watchdog", "severity": "none"})


def test_every_rule_is_unit_tested_firing_and_not_firing() -> None:
    tests = load_yaml(RULES_TEST)
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test") or []:
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "rules never seen firing in rules_test.yml"
    assert names - silent == set(), "rules never seen not firing in rules_test.yml"
    assert (firing | silent) - names == set(), "rules_test.yml tests rules that do not exist"


# --- the rules themselves ---


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_rule_has_a_severity_and_says_what_happened() -> None:
    names = Counter(rule["alert"] for rule in alert_rules())
    assert [n for n, k in names.items() if k > 1] == [], "alert names must be unique"
    for rule in alert_rules():
        name = rule["alert"]
        assert name.startswith("Profitwatch"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["service"] == JOB, name
        assert {"summary", "description"} <= rule["annotations"].keys(), name


def test_held_records_alert_is_80_percent_of_max_held_records() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "ProfitwatchHeldRecordsNearBound"]
    found = re.fullmatch(r"profitwatch_held_records > (\d+)", rule["expr"].strip())
    assert found, rule["expr"]
    bound = Settings().max_held_records
    assert int(found.group(1)) == bound * 8 // 10, "keep the threshold at 80% of the default"
    assert f"({bound:,})" in rule["annotations"]["description"]


def test_the_worker_job_is_the_one_the_rules_select() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert JOB in jobs
    assert config["rule_files"] == [RULES.name]
    for rule in alert_rules():
        for selector in re.findall(r"\bup\{([^}]*)\}", rule["expr"]):
            assert f'job="{JOB}"' in selector, rule["alert"]


# --- 2. the metrics they use ---


class _Consumer:
    def __init__(self, tps: set[TP]) -> None:
        self.tps = tps

    def assignment(self) -> set[TP]:
        return self.tps

    def highwater(self, tp: TP) -> int:
        return 10


@dataclass(frozen=True)
class Exposition:
    samples: frozenset[str]  # sample names: name_total, name_bucket, ...
    types: dict[str, str]  # sample name -> the type of its family
    labels: frozenset[str]


@cache
def exposition() -> Exposition:
    """The worker's exposition with every collector it registers, each with a sample."""
    settings = Settings()
    metrics = Metrics()
    tallies = Tallies()
    tallies.outcomes[(settings.topics.orders, "applied")] += 1
    tallies.rejections[(settings.topics.orders, "malformed_json")] += 1
    tallies.alerts["unprofitable"] += 1
    tallies.alerts_resent["unprofitable"] += 1
    tallies.statuses["profitable"] += 1
    metrics.watch(tallies)
    metrics.watch_order(
        GroupOrder(tuple(settings.topics.input_kinds()), lambda t, p: None),
        Contiguity(),
        lambda: 0,
    )
    tp = TP(settings.topics.orders, 0)
    app = SimpleNamespace(
        consumer=_Consumer({tp}), monitor=SimpleNamespace(tp_read_offsets={tp: 3})
    )
    metrics.watch_lag(app, [settings.topics.orders])
    for histogram in (metrics.event_lag, metrics.processing, metrics.sweep, metrics.hold):
        histogram.observe(0.001)
    samples: set[str] = set()
    types: dict[str, str] = {}
    labels: set[str] = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            samples.add(sample.name)
            types[sample.name] = family.type
            labels.update(sample.labels)
    return Exposition(frozenset(samples), types, frozenset(labels))


def test_the_exposition_has_every_collector() -> None:
    got = exposition()
    for name in (
        "profitwatch_input_records_total",
        "profitwatch_held_records",
        "profitwatch_offset_gaps_total",
        "profitwatch_offset_gaps_empty_total",
        "profitwatch_skipped_acks_total",
        "profitwatch_consumer_lag_records",
        "profitwatch_processing_seconds_bucket",
    ):
        assert name in got.samples, name
    assert "profitwatch_processing_seconds" not in got.samples  # only with its suffixes


KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_COUNTER_FUNCTIONS = re.compile(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: its identifiers that are no function,
    keyword, label or string."""
    text = _GROUPING.sub(" ", _MATCHERS.sub(" ", _RANGE.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for found in _IDENTIFIER.finditer(text):
        word = found.group()
        if word.lower() in KEYWORDS or text[found.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    names = set()
    for matchers in _MATCHERS.findall(text):
        names.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    for _, grouping in _GROUPING.findall(text):
        names.update(n.strip() for n in grouping.split(",") if n.strip())
    return names


def test_metric_and_label_names_are_read_from_promql() -> None:
    expr = (
        'sum by (job, topic) (rate(profitwatch_rejected_records_total{code!="x"}[10m]))'
        ' / on (job) group_left sum(up{job="profitwatch"}) > bool 0.01'
    )
    assert metric_names(expr) == {"profitwatch_rejected_records_total", "up"}
    assert label_names(expr) == {"job", "topic", "code"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))") == {
        "a_bucket"
    }


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    ]


def queries() -> list[tuple[str, str]]:
    rules = [(f"rule {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return rules + dashboard_exprs()


@pytest.mark.parametrize(("where", "expr"), queries(), ids=[w for w, _ in queries()])
def test_every_query_uses_metrics_and_labels_the_worker_exposes(where: str, expr: str) -> None:
    got = exposition()
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - got.samples - PROMETHEUS_SERIES
    assert not unknown, f"{where}: the worker exposes no {sorted(unknown)}"
    labels = label_names(expr) - got.labels - TARGET_LABELS
    assert not labels, f"{where}: no metric has the labels {sorted(labels)}"
    for name in _COUNTER_FUNCTIONS.findall(expr):
        kind = got.types.get(name)
        assert kind in ("counter", "histogram"), f"{where}: rate() of {name}, a {kind}"


# --- 3. the dashboard ---


def test_dashboard_is_valid_and_every_panel_queries_the_provisioned_prometheus() -> None:
    dash = dashboard()
    assert dash["uid"] == "profitwatch" and dash["title"]
    (datasource,) = [d for d in load_yaml(DATASOURCES)["datasources"] if d["type"] == "prometheus"]
    uid = datasource["uid"]
    ids = [panel["id"] for panel in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        where = f"panel {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target.get("datasource", panel["datasource"])["uid"] == uid, where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, where
    for variable in dash["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid
        # Grafana's `label_values(selector, label)`
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert found, variable["definition"]
        assert metric_names(found.group(1)) <= PROMETHEUS_SERIES | exposition().samples
        assert found.group(2) in TARGET_LABELS | exposition().labels


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each query as a recording rule, Grafana's variables substituted: promtool parses it."""
    rules = []
    for n, (_, expr) in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(tool("promtool", "prometheus"), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out, out


@pytest.mark.parametrize(
    ("what", "needles", "by"),
    [
        ("input records by outcome", ("rate(profitwatch_input_records_total",), "outcome"),
        ("DLQ by code", ("rate(profitwatch_rejected_records_total",), "code"),
        ("alerts by kind", ("rate(profitwatch_alerts_total",), "kind"),
        ("customers by status", ("profitwatch_customers{",), "status"),
        ("consumer lag", ("profitwatch_consumer_lag_records",), "topic"),
        ("held records", ("profitwatch_held_records",), None),
        ("processing time", ("histogram_quantile(", "profitwatch_processing_seconds_bucket"), "le"),
        (
            "event-time lag",
            ("histogram_quantile(", "profitwatch_event_time_lag_seconds_bucket"),
            "le",
        ),
        (
            "sweep duration",
            ("histogram_quantile(", "profitwatch_sweep_duration_seconds_bucket"),
            "le",
        ),
        ("hold time", ("histogram_quantile(", "profitwatch_hold_seconds_bucket"), "le"),
    ],
)
def test_dashboard_shows(what: str, needles: tuple[str, ...], by: str | None) -> None:
    found = [
        expr
        for _, expr in dashboard_exprs()
        if all(needle in expr for needle in needles)
        and (by is None or any(by in g.split(", ") for _, g in _GROUPING.findall(expr)))
    ]
    assert found, f"no panel shows {what}"
