"""The Alertmanager notifier's pure parts (alerts/alertmanager.py): the mapping of a
snapshot and an alert to Alertmanager's alert JSON, and the book's firing/resolved
diff, checked against a model of Alertmanager's v2 semantics through random histories
with failed deliveries and restarts; and its HTTP side (streams.notify_alertmanager's
client) against an in-memory transport. No broker, no sockets."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alerts.alertmanager import (
    UNKNOWN,
    Book,
    Cause,
    View,
    alertname_of,
    customer_page,
    decode_alert,
    decode_snapshot,
    drivers_text,
    resolutions,
    rfc3339,
    wanted_alert,
)
from models.errors import ConfigError
from models.outputs import Alert, Driver, Figures, Snapshot
from models.replay import Replayer
from models.settings import AlertmanagerSettings, Settings
from streams.notify_alertmanager import AlertmanagerClient, AlertmanagerNotifier, alerts_url
from streams.notify_alertmanager import shown_url as shown
from tests.integration.flow import stream

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DASH = "http://dash.example:6066"
VALID = timedelta(minutes=4)


def figures(net: str = "-120.00", referral: str = "0.00", support: str = "300.00") -> Figures:
    return Figures(
        revenue="1000.00",
        cost_of_goods="700.00",
        commissions="0.00",
        fulfillment="120.00",
        support=support,
        sales="0.00",
        overdue="0.00",
        referral_value=referral,
        direct_profit="-120.00",
        net_profit=net,
    )


def snap(cid: str, status: str, day: int = 1, **fig: str) -> Snapshot:
    at = (datetime(2026, 4, 1, tzinfo=UTC) + timedelta(days=day)).isoformat()
    return Snapshot(
        customer_id=cid,
        status=status,
        as_of=at,
        window_days=90,
        trailing=figures(**fig),
        lifetime=figures(**fig),
        revenue_change=-0.25,
        open_invoices={"count": 0, "amount_due": "0.00", "provision": "0.00"},
        referrals={"referred_customers": 0, "referred_by": None},
        first_seen="2025-01-01T00:00:00+00:00",
        last_event_at=at,
        events_applied=10,
    )


def alert(cid: str, status: str, day: int = 1, summary: str = "") -> Alert:
    kind = {"unprofitable": "became_unprofitable", "at_risk": "at_risk"}.get(status, "recovered")
    severity = {"unprofitable": "critical", "at_risk": "warning"}.get(status, "info")
    at = (datetime(2026, 4, 1, tzinfo=UTC) + timedelta(days=day)).isoformat()
    return Alert(
        alert_id=f"id-{cid}-{day}",
        customer_id=cid,
        kind=kind,
        severity=severity,
        status=status,
        previous_status="profitable",
        as_of=at,
        trigger_event_id=None,
        window_days=90,
        trailing=figures(),
        lifetime=figures(),
        revenue_change=None,
        drivers=[Driver(component="support", amount="300.00", share=0.6)],
        referral_value_at_stake="0.00",
        summary=summary or f"Customer {cid} said something on day {day}.",
    )


def names(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(customer, alertname, firing|resolved) of a plan's JSON."""
    out = []
    for a in alerts:
        ends = datetime.fromisoformat(a["endsAt"])
        state = "firing" if ends > NOW else "resolved"
        out.append((a["labels"]["customer_id"], a["labels"]["alertname"], state))
    return out


# --- the mapping ---


def test_alertnames_and_severities_follow_the_status() -> None:
    assert alertname_of("unprofitable") == "CustomerUnprofitable"
    assert alertname_of("at_risk") == "CustomerAtRisk"
    assert alertname_of("profitable") is None and alertname_of("new") is None
    assert View.of(snap("c", "profitable"), "EUR") is None
    assert View.of(snap("c", "new"), "EUR") is None
    a = wanted_alert("c", View.of(snap("c", "at_risk"), "EUR"), None, dashboard_url=DASH, now=NOW)  # type: ignore[arg-type]
    assert a.labels == {"alertname": "CustomerAtRisk", "customer_id": "c", "severity": "warning"}
    b = wanted_alert(
        "c",
        View.of(snap("c", "unprofitable"), "EUR"),  # type: ignore[arg-type]
        None,
        dashboard_url=DASH,
        now=NOW,
    )
    assert b.labels["severity"] == "critical"


def test_customer_page_is_the_dashboards_hash_route_with_the_id_encoded_as_the_page_does() -> None:
    assert customer_page(DASH, "c-17") == f"{DASH}/#/customers/c-17"
    assert customer_page(DASH + "/", "c-17") == f"{DASH}/#/customers/c-17"
    # encodeURIComponent: everything but letters, digits and -_.!~*'() is escaped
    assert (
        customer_page(DASH, "a b/ä#?(x)*!~'") == f"{DASH}/#/customers/a%20b%2F%C3%A4%23%3F(x)*!~'"
    )


def test_firing_json_has_the_labels_annotations_link_and_times() -> None:
    view = View.of(snap("c-1", "unprofitable", referral="42.50", net="-120.00"), "EUR")
    assert view is not None
    cause = Cause.of(
        alert("c-1", "unprofitable", summary="Customer c-1 became unprofitable."), "EUR"
    )
    a = wanted_alert("c-1", view, cause, dashboard_url=DASH, now=NOW)
    doc = a.firing(NOW + VALID)
    assert doc == {
        "labels": {
            "alertname": "CustomerUnprofitable",
            "customer_id": "c-1",
            "severity": "critical",
        },
        "annotations": {
            "summary": "Customer c-1 became unprofitable.",
            "drivers": "support 300.00 EUR (60%)",
            "trailing_net_profit": "-120.00 EUR",
            "referral_value_at_stake": "42.50 EUR",
            "as_of": view.as_of_text,
        },
        "startsAt": rfc3339(cause.as_of),  # when the status began: the alert's as_of
        "endsAt": "2026-05-01T12:04:00.000+00:00",
        "generatorURL": f"{DASH}/#/customers/c-1",
    }
    assert all(isinstance(v, str) for v in doc["annotations"].values())
    resolved = a.resolved(NOW)
    assert resolved["endsAt"] == rfc3339(NOW) and resolved["labels"] == doc["labels"]
    assert resolved["annotations"] == doc["annotations"]  # a resolved message says what it was


def test_without_a_matching_alert_the_snapshot_speaks_and_starts_the_alert() -> None:
    view = View.of(snap("c-2", "at_risk", day=3, support="0.00"), "EUR")
    assert view is not None
    stale = Cause.of(alert("c-2", "unprofitable", day=1), "EUR")  # about another status
    for cause in (None, stale):
        a = wanted_alert("c-2", view, cause, dashboard_url=DASH, now=NOW)
        ann = dict(a.annotations)
        assert ann["summary"] == (
            "Customer c-2 is at risk: net −120.00 EUR over 90 days; cost of goods costs are "
            "85% of costs; revenue −25% vs the previous 90 days."
        )
        assert ann["drivers"] == "cost of goods 700.00 EUR (85%), fulfillment 120.00 EUR (15%)"
        assert a.starts_at == view.as_of
    # never in the future (an as_of may be a little ahead of the clock)
    early = wanted_alert("c-2", view, None, dashboard_url=DASH, now=view.as_of - timedelta(1))
    assert early.starts_at == view.as_of - timedelta(1)


def test_the_snapshots_sentence_is_the_alerts_sentence_of_the_same_evaluation() -> None:
    """Over a generated year through the engine: for every alert into a firing status,
    the fallback made of the snapshot right after it says what the alert says."""
    settings = Settings()
    r = Replayer(settings)
    lines = [json.dumps(x, default=str).encode() for x in stream(12, 365, 3)]
    compared = 0
    for _, outputs in r.replay_lines(lines):
        for o in outputs:
            if o.topic != settings.topics.alerts:
                continue
            a = decode_alert(json.dumps(o.value).encode())
            view = View.of(r.model.snapshot(r.states[a.customer_id]), "EUR")
            if view is None:
                continue
            compared += 1
            assert view.summary == a.summary.replace("became unprofitable", "is unprofitable")
            assert view.drivers == drivers_text(a.drivers, "EUR")
    assert compared >= 10


def test_drivers_text() -> None:
    assert drivers_text([], "EUR") == "no costs in the window"
    two = [
        Driver(component="cost_of_goods", amount="10.00", share=0.6667),
        Driver(component="sales", amount="5.00", share=0.3333),
    ]
    assert drivers_text(two, "CHF") == "cost of goods 10.00 CHF (67%), sales 5.00 CHF (33%)"


def test_decoding_is_tolerant_of_new_top_level_fields_and_refuses_what_is_not_one() -> None:
    s = snap("c", "at_risk")
    doc = s.to_wire() | {"added_later": 1}
    assert decode_snapshot(json.dumps(doc).encode()).customer_id == "c"
    a = alert("c", "at_risk")
    assert decode_alert(json.dumps(a.to_wire() | {"x": None}).encode()).summary == a.summary
    for bad in (b"{}", b"[1]", b"not json", json.dumps(a.to_wire()).encode()):
        with pytest.raises(ValueError):
            decode_snapshot(bad)
    # Money stays a string: never a float on the way
    assert decode_snapshot(json.dumps(doc).encode()).trailing.net_profit == "-120.00"


# --- the diff ---


def test_resolutions() -> None:
    a = wanted_alert(
        "c",
        View.of(snap("c", "at_risk"), "EUR"),  # type: ignore[arg-type]
        None,
        dashboard_url=DASH,
        now=NOW,
    )
    assert resolutions(None, "CustomerAtRisk") == []
    assert resolutions(None, None) == []
    assert resolutions(a, "CustomerAtRisk") == []
    assert resolutions(a, "CustomerUnprofitable") == ["CustomerAtRisk"]
    assert resolutions(a, None) == ["CustomerAtRisk"]
    assert resolutions(UNKNOWN, None) == ["CustomerUnprofitable", "CustomerAtRisk"]
    assert resolutions(UNKNOWN, "CustomerAtRisk") == ["CustomerUnprofitable"]


def book() -> Book:
    return Book(currency="EUR", dashboard_url=DASH)


def test_a_status_change_fires_the_new_alertname_and_resolves_the_old_one() -> None:
    b = book()
    b.on_snapshot("c", 0, snap("c", "at_risk", day=1), settled=False)
    b.on_snapshot("p", 1, snap("p", "profitable", day=1), settled=False)
    plan = b.plan(NOW, full=False, valid_for=VALID)
    assert names(plan.alerts) == [("c", "CustomerAtRisk", "firing")]
    assert plan.changed == ["c"] and (plan.firing, plan.resolved) == (1, 0)
    b.settle(plan)
    b.prune()
    assert len(b) == 1 and b.changes == 0  # the profitable one is forgotten

    b.on_snapshot("c", 0, snap("c", "at_risk", day=2), settled=False)  # figures only
    assert b.changes == 0 and b.plan(NOW, full=False, valid_for=VALID).alerts == []
    assert names(b.plan(NOW, full=True, valid_for=VALID).alerts) == [
        ("c", "CustomerAtRisk", "firing")
    ]

    b.on_snapshot("c", 0, snap("c", "unprofitable", day=9), settled=False)
    plan = b.plan(NOW, full=False, valid_for=VALID)
    assert names(plan.alerts) == [
        ("c", "CustomerAtRisk", "resolved"),
        ("c", "CustomerUnprofitable", "firing"),
    ]
    # the resolution carries what the resolved alert said
    assert plan.alerts[0]["annotations"]["trailing_net_profit"] == "-120.00 EUR"
    b.settle(plan)

    b.on_snapshot("c", 0, snap("c", "profitable", day=20, net="80.00"), settled=False)
    plan = b.plan(NOW, full=True, valid_for=VALID)
    assert names(plan.alerts) == [("c", "CustomerUnprofitable", "resolved")]
    b.settle(plan)
    b.prune()
    assert len(b) == 0 and b.plan(NOW, full=True, valid_for=VALID).alerts == []


def test_a_change_that_comes_back_before_it_is_delivered_is_no_change() -> None:
    b = book()
    b.on_snapshot("c", 0, snap("c", "at_risk"), settled=False)
    b.settle(b.plan(NOW, full=False, valid_for=VALID))
    b.on_snapshot("c", 0, snap("c", "profitable", day=2), settled=False)
    assert b.changes == 1
    b.on_snapshot("c", 0, snap("c", "at_risk", day=3), settled=False)
    assert b.changes == 0


def test_a_tombstone_resolves_and_a_revoked_partition_is_forgotten_without_resolving() -> None:
    b = book()
    b.on_snapshot("c", 0, snap("c", "at_risk"), settled=False)
    b.on_snapshot("d", 1, snap("d", "unprofitable"), settled=False)
    b.settle(b.plan(NOW, full=False, valid_for=VALID))
    b.on_snapshot("c", 0, None, settled=False)
    assert names(b.plan(NOW, full=False, valid_for=VALID).alerts) == [
        ("c", "CustomerAtRisk", "resolved")
    ]
    assert b.drop_partitions([1, 0]) == 2
    assert len(b) == 0 and b.plan(NOW, full=True, valid_for=VALID).alerts == []


def test_settled_records_were_delivered_and_unseen_ones_may_have_left_anything() -> None:
    """Re-reading after a restart: below the committed offset nothing is owed; a
    customer first met above it may have had either alertname."""
    b = book()
    b.on_snapshot("a", 0, snap("a", "at_risk"), settled=True)
    b.on_snapshot("b", 0, snap("b", "at_risk"), settled=True)
    b.on_snapshot("b", 0, snap("b", "unprofitable", day=9), settled=False, unseen=UNKNOWN)
    b.on_snapshot("n", 0, snap("n", "profitable"), settled=False, unseen=UNKNOWN)
    b.on_snapshot("m", 0, snap("m", "at_risk"), settled=False, unseen=UNKNOWN)
    plan = b.plan(NOW, full=False, valid_for=VALID)
    assert sorted(names(plan.alerts)) == [
        ("b", "CustomerAtRisk", "resolved"),  # known: delivered as at risk
        ("b", "CustomerUnprofitable", "firing"),
        ("m", "CustomerAtRisk", "firing"),
        ("m", "CustomerUnprofitable", "resolved"),  # not known: the other one, just in case
        ("n", "CustomerAtRisk", "resolved"),
        ("n", "CustomerUnprofitable", "resolved"),
    ]
    bare = next(a for a in plan.alerts if a["labels"]["customer_id"] == "n")
    assert set(bare) == {"labels", "endsAt"}  # Alertmanager takes startsAt = endsAt
    full = b.plan(NOW, full=True, valid_for=VALID)
    assert ("a", "CustomerAtRisk", "firing") in names(full.alerts)  # the periodic re-send


def test_the_alerts_words_annotate_while_they_are_about_the_current_status() -> None:
    b = book()
    # the alert comes first (alerts are sent at once, snapshots at the commit)
    b.on_alert(alert("c", "at_risk", day=5, summary="words of day 5"), 0)
    b.on_snapshot("c", 0, snap("c", "profitable", day=4), settled=False)  # older: kept
    assert b.changes == 0
    b.on_snapshot("c", 0, snap("c", "at_risk", day=5), settled=False)

    def summary() -> str:
        plan = b.plan(NOW, full=True, valid_for=VALID)
        return str(plan.alerts[-1]["annotations"]["summary"])

    assert summary() == "words of day 5"
    b.on_alert(alert("c", "at_risk", day=2, summary="redelivered, older"), 0)
    assert summary() == "words of day 5"
    b.on_snapshot("c", 0, snap("c", "unprofitable", day=12), settled=False)
    assert summary().startswith("Customer c is unprofitable: net −120.00 EUR")  # not yet said
    b.on_alert(alert("c", "unprofitable", day=12, summary="words of day 12"), 0)
    assert summary() == "words of day 12"
    b.on_alert(alert("c", "profitable", day=20), 0)  # recovered: the words are over
    assert summary().startswith("Customer c is unprofitable")
    b.on_snapshot("c", 0, snap("c", "profitable", day=20), settled=False)
    assert b.plan(NOW, full=True, valid_for=VALID).alerts == []  # nothing was ever delivered


def test_an_alert_and_a_snapshot_of_one_as_of_keep_the_alerts_words() -> None:
    """Two records of one time: the recovery's snapshot may be read after the next
    alert (at risk again, the same as_of): those words are still the current ones."""
    b = book()
    b.on_alert(alert("c", "profitable", day=5), 0)
    b.on_alert(alert("c", "at_risk", day=5, summary="at risk again"), 0)
    b.on_snapshot("c", 0, snap("c", "profitable", day=5), settled=False)
    b.on_snapshot("c", 0, snap("c", "at_risk", day=6), settled=False)
    plan = b.plan(NOW, full=False, valid_for=VALID)
    assert plan.alerts[0]["annotations"]["summary"] == "at risk again"


def test_chunks() -> None:
    b = book()
    for i in range(7):
        b.on_snapshot(f"c{i}", 0, snap(f"c{i}", "at_risk"), settled=False)
    plan = b.plan(NOW, full=True, valid_for=VALID)
    assert [len(c) for c in plan.chunks(3)] == [3, 3, 1]
    assert plan.firing == 7 and len(plan.changed) == 7


# --- against a model of Alertmanager, through random histories ---


class FakeAlertmanager:
    """What `GET /api/v2/alerts?active=true` would show: by label set, the latest
    POST's endsAt (a resolution ends it; a later firing POST starts it again)."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, str], datetime] = {}

    def post(self, alerts: list[dict[str, Any]]) -> None:
        for a in alerts:
            labels = a["labels"]
            assert set(labels) == {"alertname", "customer_id", "severity"}
            key = (labels["customer_id"], labels["alertname"])
            self.ends[key] = datetime.fromisoformat(a["endsAt"])

    def active(self, now: datetime) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for (cid, name), ends in self.ends.items():
            if ends > now:
                out.setdefault(cid, set()).add(name)
        return out


STATUSES = ("new", "profitable", "at_risk", "unprofitable")


def histories(seed: int) -> Iterator[tuple[str, str | None, bool]]:
    """(customer, status or None for a tombstone, delivered?) steps."""
    rng = random.Random(seed)
    for _ in range(300):
        cid = f"c{rng.randrange(12)}"
        status = None if rng.random() < 0.03 else rng.choice(STATUSES)
        yield cid, status, rng.random() < 0.7


@pytest.mark.parametrize("seed", range(25))
def test_alertmanager_shows_exactly_the_firing_customers_through_failures_and_restarts(
    seed: int,
) -> None:
    """A log of snapshots (a partition), a book that delivers only some rounds (the
    others fail), commits after each delivered round, and restarts now and then: a new
    book re-reads the log, compacted, settled below the committed offset. After every
    delivered round, Alertmanager shows exactly the latest statuses' alertnames."""
    rng = random.Random(seed)
    am = FakeAlertmanager()
    log: list[tuple[str, Snapshot | None]] = []
    committed: int | None = None
    b = book()
    read = 0
    day = 0
    for cid, status, delivers in histories(seed):
        day += 1
        log.append((cid, None if status is None else snap(cid, status, day=day)))
        if rng.random() < 0.08:  # a restart: the log compacted, read again
            latest = {c: (i, s) for i, (c, s) in enumerate(log)}
            b = book()
            for c, (i, s) in sorted(latest.items(), key=lambda kv: kv[1][0]):
                settled = committed is not None and i < committed
                unseen = UNKNOWN if committed is not None else None
                b.on_snapshot(c, 0, s, settled=settled, unseen=unseen)
            read = len(log)
            b.prune()
        else:
            for c, s in log[read:]:
                b.on_snapshot(c, 0, s, settled=False)
            read = len(log)
        if not delivers:
            continue  # the round failed: nothing settled, nothing committed
        plan = b.plan(NOW, full=rng.random() < 0.3, valid_for=VALID)
        am.post(plan.alerts)
        b.settle(plan)
        b.prune()
        committed = read
        latest_status: dict[str, str] = {}
        for c, s in log:
            if s is None:
                latest_status.pop(c, None)
            else:
                latest_status[c] = s.status
        want = {c: {n} for c, st in latest_status.items() if (n := alertname_of(st)) is not None}
        assert am.active(NOW) == want
        assert b.firing_names() == {c: next(iter(n)) for c, n in want.items()}
        assert b.changes == 0


# --- the HTTP side (streams/notify_alertmanager.py) ---


def client(handler: Any, **am: Any) -> AlertmanagerClient:
    settings = AlertmanagerSettings(url="http://am.example:9093", **am)
    return AlertmanagerClient(settings, transport=httpx.MockTransport(handler))


def test_the_alerts_url() -> None:
    assert str(alerts_url("http://am:9093")) == "http://am:9093/api/v2/alerts"
    assert str(alerts_url("http://am:9093/")) == "http://am:9093/api/v2/alerts"
    assert str(alerts_url("https://h/alertmanager")) == "https://h/alertmanager/api/v2/alerts"
    assert str(alerts_url("http://am:9093/api/v2/alerts")) == "http://am:9093/api/v2/alerts"
    for bad in (None, "", "ftp://am", "am:9093", "http://"):
        with pytest.raises(ConfigError):
            alerts_url(bad)
    assert shown(alerts_url("https://u:pw@am:9093/p?token=t")) == "https://am:9093/p/api/v2/alerts"


def test_the_client_posts_json_and_classifies_the_answers() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(200),
            httpx.Response(503, headers={"retry-after": "7"}),
            httpx.Response(400, text='"start time must be before end time"'),
            httpx.Response(404, text="no such route"),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    c = client(handler, bearer_token=SecretStr("s3cret"))
    body = [{"labels": {"alertname": "CustomerAtRisk"}, "endsAt": "2026-05-01T12:00:00+00:00"}]
    assert c.post(body).kind == "delivered"
    retry = c.post(body)
    assert (retry.kind, retry.retry_after_s) == ("retry", 7.0)
    refused = c.post(body)
    assert refused.kind == "refused" and "start time must be before end time" in refused.detail
    assert c.post(body).kind == "retry"  # a wrong URL or a proxy: fixable, so retried
    req = seen[0]
    assert req.method == "POST" and str(req.url) == "http://am.example:9093/api/v2/alerts"
    assert json.loads(req.content) == body
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"] == "Bearer s3cret"


def test_connection_errors_and_timeouts_are_retried_and_url_credentials_are_basic_auth() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert client(refuse).post([]).kind == "retry"

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    got = client(slow).post([])
    assert got.kind == "retry" and "timed out" in got.detail

    auth: list[str] = []

    def ok(request: httpx.Request) -> httpx.Response:
        auth.append(request.headers.get("authorization", ""))
        return httpx.Response(200)

    am = AlertmanagerSettings(url="http://user:pw@am.example:9093")
    AlertmanagerClient(am, transport=httpx.MockTransport(ok)).post([])
    assert auth == ["Basic dXNlcjpwdw=="]


def test_the_notifier_refuses_bad_urls_before_any_io() -> None:
    settings = Settings()
    with pytest.raises(ConfigError, match="--url"):
        AlertmanagerNotifier(settings, AlertmanagerSettings())
    with pytest.raises(ConfigError, match="dashboard url"):
        AlertmanagerNotifier(settings, AlertmanagerSettings(url="http://am", dashboard_url="x"))
    n = AlertmanagerNotifier(settings, AlertmanagerSettings(url="http://am"))
    assert n.group_id == "profitwatch-notify-alertmanager"
    assert settings.alertmanager.resend_interval_seconds == 60
