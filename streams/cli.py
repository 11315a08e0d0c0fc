"""`profitwatch`: the command line.

Commands that need Faust import it lazily, so `replay`, `generate` and `schema`
start fast and run without a broker.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from models.errors import ConfigError, ProfitwatchError
from models.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.notifier_metrics import Families

M = TypeVar("M", bound=BaseModel)


def _timestamp(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError("the timestamp needs an offset (Z or +hh:mm)")
    return dt


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def cmd_replay(args: argparse.Namespace) -> int:
    from models.replay import replay
    from models.timeutil import to_us

    settings = _settings(args)
    as_of = to_us(args.as_of) if args.as_of else None
    out = sys.stdout
    if args.events == "-":
        replay(sys.stdin.buffer, settings, out, as_of_us=as_of)
    else:
        with open(args.events, "rb") as f:
            replay(f, settings, out, as_of_us=as_of)
    out.flush()
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from models.generator import GeneratorConfig, generate_lines

    cfg = GeneratorConfig(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        bad_record_rate=args.bad_rate,
        duplicate_rate=args.duplicate_rate,
        jitter=args.jitter,
        activity=args.activity,
    )
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for line in generate_lines(cfg):
            out.write(line + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _log_at_info() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )


def _wait_for_broker(settings: Settings) -> None:
    """Until the broker answers: reported and retried, `BrokerUnreachable` after
    `broker_wait_seconds` (0: for ever)."""
    from streams.reachability import wait_until_reachable

    wait_until_reachable(
        settings.kafka_bootstrap_servers,
        security=settings.kafka,
        give_up_after_s=settings.broker_wait_seconds,
    )


def cmd_worker(args: argparse.Namespace, faust_args: list[str]) -> int:
    """The production entry point: a Faust worker (Faust's own options pass through)."""
    from streams.agents import Service, worker_argv
    from streams.topics import ensure_topics

    settings = _settings(args)
    _log_at_info()
    service = Service(settings)  # refuses settings it cannot honour, before any I/O
    _wait_for_broker(settings)
    ensure_topics(settings)  # refuses a co-partitioned topic of another partition count
    sys.argv = ["profitwatch worker", *worker_argv(faust_args)]
    service.app.main()  # runs until stopped; exits the process itself
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import BrokerKind, run_foreground

    kind: BrokerKind = args.kind
    return run_foreground(args.host, args.port, kind, args.data_dir)


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.produce import produce_file

    settings = _settings(args)
    n = produce_file(args.file, settings, pace_s=args.pace_ms / 1000.0)
    print(f"produced {n} records to {settings.kafka_bootstrap_servers}", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from streams.tail import tail

    settings = _settings(args)
    topics = args.topics or [settings.topics.alerts, settings.topics.snapshots, settings.topics.dlq]
    return tail(
        settings,
        topics,
        from_beginning=args.from_beginning,
        idle_timeout_s=args.idle_timeout,
        max_records=args.max_records,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """The real service on an embedded broker; `--offline` replays through the engine."""
    settings = _settings(args)
    if args.offline:
        return _offline_demo(args, settings)
    from streams.demo import run_demo

    return run_demo(
        settings,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        seconds=args.seconds,
        keep=args.keep,
    )


def _offline_demo(args: argparse.Namespace, settings: Settings) -> int:
    import time
    from collections import Counter

    from models.generator import GeneratorConfig, generate_lines
    from models.replay import Replayer
    from streams.console import print_alert

    cfg = GeneratorConfig(customers=args.customers, days=args.days, seed=args.seed)
    r = Replayer(settings)
    lines = list(generate_lines(cfg))
    pause = args.seconds / max(len(lines), 1)
    print(
        f"profitwatch demo --offline: {len(lines)} events of {args.customers} customers "
        f"over {args.days} days, replayed through the engine (no broker)\n"
    )
    statuses: Counter[str] = Counter()
    try:
        for _, outputs in r.replay_lines(lines):
            for out in outputs:
                if out.topic == settings.topics.alerts:
                    print_alert(out.value)
            if pause:
                time.sleep(pause)
    except KeyboardInterrupt:
        print("\ninterrupted")
    for snap in r.snapshots():
        statuses[snap.value["status"]] += 1
    print(f"\nrecords: {dict(r.outcomes)}; rejected by code: {dict(r.rejections)}")
    print(f"customers by status: {dict(sorted(statuses.items()))}")
    return 0


def _overridden(model: type[M], current: M, given: dict[str, Any]) -> M:
    """A notifier's settings (env, TOML) with the options given on the command line."""
    from pydantic import ValidationError

    try:
        return model.model_validate(
            current.model_dump() | {k: v for k, v in given.items() if v is not None}
        )
    except ValidationError as exc:  # the field and the rule, never the input (a secret)
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(why) from None


def _serve_notifier_metrics(settings: Settings, port: int | None, families: Families) -> None:
    """/metrics on `web_bind`:`port` while the process runs (its thread is a daemon)."""
    if port is None:
        return
    import logging

    from streams.notifier_metrics import serve_metrics

    server = serve_metrics(port, families, settings.web_bind)
    logging.getLogger("streams.cli").info(
        "metrics on http://%s:%d/metrics", settings.web_bind, server.server_port
    )


def cmd_notify_webhook(args: argparse.Namespace) -> int:
    """Every alert POSTed to a URL, signed (streams/notify_webhook.py); runs until
    stopped. Exit code 3 when the endpoint answers 410 Gone."""
    from models.settings import WebhookSettings
    from streams.notifier_metrics import webhook_families
    from streams.notify_webhook import EXIT_ENDPOINT_GONE, EndpointGone, Notifier
    from streams.process import run_until_signalled

    settings = _settings(args)
    given = {
        "url": args.url,
        "secret": args.secret,
        "attempts": args.attempts,
        "backoff_base_seconds": args.backoff_base,
        "backoff_cap_seconds": args.backoff_cap,
        "timeout_seconds": args.timeout,
        "undeliverable_topic": args.undeliverable_topic,
        "metrics_port": args.metrics_port,
    }
    webhook = _overridden(WebhookSettings, settings.webhook, given)
    _log_at_info()
    notifier = Notifier(settings, webhook)  # refuses a bad URL or secret before any I/O
    _serve_notifier_metrics(settings, webhook.metrics_port, webhook_families(notifier.counts))
    _wait_for_broker(settings)
    try:
        run_until_signalled(notifier)
    except EndpointGone as exc:
        print(f"profitwatch notify webhook: {exc}", file=sys.stderr, flush=True)
        return EXIT_ENDPOINT_GONE
    return 0


def cmd_notify_alertmanager(args: argparse.Namespace) -> int:
    """A Prometheus Alertmanager kept in step with the customers' statuses
    (streams/notify_alertmanager.py); runs until stopped."""
    from models.settings import AlertmanagerSettings
    from streams.notifier_metrics import alertmanager_families
    from streams.notify_alertmanager import AlertmanagerNotifier
    from streams.process import run_until_signalled

    settings = _settings(args)
    given = {
        "url": args.url,
        "dashboard_url": args.dashboard_url,
        "resend_interval_seconds": args.resend_interval,
        "valid_for_intervals": args.valid_for_intervals,
        "backoff_base_seconds": args.backoff_base,
        "backoff_cap_seconds": args.backoff_cap,
        "timeout_seconds": args.timeout,
        "metrics_port": args.metrics_port,
    }
    am = _overridden(AlertmanagerSettings, settings.alertmanager, given)
    _log_at_info()
    notifier = AlertmanagerNotifier(settings, am)  # refuses a bad URL before any I/O
    _serve_notifier_metrics(settings, am.metrics_port, alertmanager_families(notifier.counts))
    _wait_for_broker(settings)
    run_until_signalled(notifier)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from models.schema import schemas

    docs = schemas(outputs=args.outputs)
    if args.event:
        if args.event not in docs:
            print(f"unknown schema {args.event!r}; choose from {', '.join(docs)}", file=sys.stderr)
            return 2
        docs = {args.event: docs[args.event]}
    json.dump(docs, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    """The AsyncAPI 3.0 document of the Kafka interface (models/asyncapi.py), as YAML."""
    from models.asyncapi import build, default_settings, to_yaml

    # --defaults: what docs/asyncapi.yaml holds, whatever the shell's environment says.
    settings = default_settings() if args.defaults else _settings(args)
    text = to_yaml(build(settings))
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="profitwatch", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="run the engine over a replay-format file, print outputs")
    r.add_argument("events", help="replay-format JSONL file, or - for stdin")
    r.add_argument("--config", help="TOML settings file")
    r.add_argument("--as-of", type=_timestamp, help="sweep all customers at this time at the end")
    r.set_defaults(func=cmd_replay)

    g = sub.add_parser("generate", help="a seeded, realistic event stream in replay format")
    g.add_argument("--customers", type=int, default=50)
    g.add_argument("--days", type=int, default=365)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--start", type=_timestamp, default=_timestamp("2025-01-01T00:00:00+00:00"))
    g.add_argument("--bad-rate", type=float, default=0.002, help="share of malformed records")
    g.add_argument("--duplicate-rate", type=float, default=0.01, help="share of redelivered events")
    g.add_argument(
        "--jitter",
        type=float,
        default=0.05,
        help="probability of swapping neighbouring records of different topics < 1 day apart",
    )
    g.add_argument(
        "--activity", type=float, default=1.0, help="scales records per customer (1: ~240/year)"
    )
    g.add_argument("-o", "--output", help="file to write (default stdout)")
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("demo", help="a generated year of business with alerts shown live")
    d.add_argument("--customers", type=int, default=40)
    d.add_argument("--days", type=int, default=365)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--seconds", type=float, default=120.0, help="how long the year takes to play")
    d.add_argument("--offline", action="store_true", help="no broker: replay through the engine")
    d.add_argument("--keep", action="store_true", help="keep the demo's logs and data dir")
    d.add_argument("--config", help="TOML settings file")
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser(
        "worker",
        help="run the streaming service (a Faust worker; Faust's worker options pass through)",
    )
    w.add_argument("--config", help="TOML settings file")
    w.set_defaults(func=cmd_worker)

    b = sub.add_parser(
        "broker",
        help="run a local broker: tansu (embedded, memory only) or Apache Kafka (Java 17)",
    )
    b.add_argument(
        "--kind",
        choices=["tansu", "kafka"],
        default="tansu",
        help="tansu (default, no Java) or Apache Kafka in KRaft mode from Maven Central",
    )
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=9092, help="0 picks a free port")
    b.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="kafka only: keep the logs here across restarts (default: a temp dir)",
    )
    b.set_defaults(func=cmd_broker)

    pr = sub.add_parser("produce", help="send replay-format records to Kafka (backfills)")
    pr.add_argument("file", help="replay-format JSONL file, or - for stdin")
    pr.add_argument("--config", help="TOML settings file")
    pr.add_argument("--pace-ms", type=float, default=0.0, help="wait for each ack, then this long")
    pr.set_defaults(func=cmd_produce)

    t = sub.add_parser("tail", help="print output topics as replay-format lines")
    t.add_argument("topics", nargs="*", help="default: alerts, snapshots and DLQ topics")
    t.add_argument("--config", help="TOML settings file")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--idle-timeout", type=float, default=None, help="stop after this long idle")
    t.add_argument("--max-records", type=int, default=None)
    t.set_defaults(func=cmd_tail)

    n = sub.add_parser("notify", help="send every alert to another system")
    notify = n.add_subparsers(dest="target", required=True)
    nw = notify.add_parser(
        "webhook", help="POST every alert to a URL, signed as Standard Webhooks says"
    )
    nw.add_argument("--url", help="the endpoint (default: PROFITWATCH_WEBHOOK__URL)")
    nw.add_argument(
        "--secret",
        help="whsec_<base64 key>; prefer PROFITWATCH_WEBHOOK__SECRET: other users see "
        "command lines",
    )
    nw.add_argument("--attempts", type=int, help="per alert, the first one included (8)")
    nw.add_argument(
        "--backoff-base", type=float, help="seconds before the first retry, at most (0.5)"
    )
    nw.add_argument("--backoff-cap", type=float, help="seconds between attempts, at most (60)")
    nw.add_argument("--timeout", type=float, help="seconds to connect, send, await the answer (10)")
    nw.add_argument(
        "--undeliverable-topic", help="dead letters (profitability-alerts-undeliverable)"
    )
    nw.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here (none)")
    nw.add_argument("--config", help="TOML settings file")
    nw.set_defaults(func=cmd_notify_webhook)
    na = notify.add_parser(
        "alertmanager",
        help="keep a Prometheus Alertmanager in step: one alert per customer at risk or "
        "unprofitable",
    )
    na.add_argument(
        "--url",
        help="Alertmanager's base URL, e.g. http://alertmanager:9093 "
        "(default: PROFITWATCH_ALERTMANAGER__URL)",
    )
    na.add_argument(
        "--dashboard-url",
        help="the worker's dashboard, for each alert's link (http://localhost:6066)",
    )
    na.add_argument(
        "--resend-interval", type=float, help="seconds between re-sends of firing alerts (60)"
    )
    na.add_argument(
        "--valid-for-intervals",
        type=int,
        help="an alert not re-sent for this many intervals resolves by itself (4)",
    )
    na.add_argument(
        "--backoff-base", type=float, help="seconds before the first retry, at most (0.5)"
    )
    na.add_argument("--backoff-cap", type=float, help="seconds between attempts, at most (30)")
    na.add_argument("--timeout", type=float, help="seconds to connect, send, await the answer (10)")
    na.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here (none)")
    na.add_argument("--config", help="TOML settings file")
    na.set_defaults(func=cmd_notify_alertmanager)

    s = sub.add_parser("schema", help="JSON Schema of the input events (and outputs)")
    s.add_argument(
        "event", nargs="?", help="one of: order, invoice, ticket, referral, sales_activity"
    )
    s.add_argument("--outputs", action="store_true", help="include snapshot, alert and DLQ record")
    s.set_defaults(func=cmd_schema)

    a = sub.add_parser("asyncapi", help="AsyncAPI 3.0 document of the Kafka interface (YAML)")
    a.add_argument("-o", "--out", help="file to write, e.g. docs/asyncapi.yaml (default stdout)")
    settings_from = a.add_mutually_exclusive_group()
    settings_from.add_argument("--config", help="TOML settings file")
    settings_from.add_argument(
        "--defaults",
        action="store_true",
        help="the default settings, ignoring the environment (what docs/asyncapi.yaml holds)",
    )
    a.set_defaults(func=cmd_asyncapi)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from streams.process import tune_gc

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["worker"]:
        args, faust_args = parser.parse_known_args(argv)
    else:
        args, faust_args = parser.parse_args(argv), []
    tune_gc()
    try:
        if args.command == "worker":
            return cmd_worker(args, faust_args)
        code: int = args.func(args)  # every command returns an exit code
        return code
    except BrokenPipeError:  # `profitwatch replay … | head` is fine
        return 0
    except ProfitwatchError as exc:  # a known failure: its message, not a traceback
        print(f"profitwatch {args.command}: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
