"""The ``servicewatch`` command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from streams import settings as defaults
from streams.settings import Settings, policy_file

DESCRIPTION = """\
servicewatch watches interaction events (greeting, response, promise, delivery) on
Kafka and tells you, live, whether customers are greeted and answered quickly and
whether every promise is kept on time. Metrics are served on /metrics for Prometheus.

Start here:
  servicewatch run         everything on this machine: embedded broker, worker, traffic
  servicewatch worker      a worker against your Kafka cluster
  servicewatch simulate    realistic traffic into a topic, for demos and load tests

Emitting events from your systems (Python, HTTP POST /events on a worker, any Kafka client):
  servicewatch emit        send one event from flags or JSON
  servicewatch replay      backfill a JSONL file, each event stamped with its own time
  servicewatch validate    check a JSONL file line by line, as a worker would
  servicewatch schema      the JSON Schemas every emitter must follow

Settings come from flags or SERVICEWATCH_* environment variables
(SERVICEWATCH_BROKER, SERVICEWATCH_TOPIC, SERVICEWATCH_WEB_PORT, ...).
"""


def _add_worker_options(parser: argparse.ArgumentParser, with_broker: bool = True) -> None:
    base = Settings()
    if with_broker:
        parser.add_argument(
            "--broker", default=base.broker,
            help=f"Kafka bootstrap URL, e.g. kafka://host:9092 (default: {base.broker}; env SERVICEWATCH_BROKER)",
        )
    parser.add_argument(
        "--topic", default=base.topic,
        help=f"events topic; dead letters go to TOPIC.dlq (default: {base.topic}; env SERVICEWATCH_TOPIC)",
    )
    parser.add_argument(
        "--findings-topic", default=base.findings_topic_name, dest="findings_topic_name",
        metavar="TOPIC",
        help="where findings (promise_at_risk, promise_missed, response_overdue) are published "
        "(default: TOPIC.findings; env SERVICEWATCH_FINDINGS_TOPIC)",
    )
    parser.add_argument(
        "--policy", type=policy_file, default=base.policy_path, dest="policy_path", metavar="FILE",
        help="service policy (TOML): response/greeting targets, business-hours calendars, "
        "at-risk thresholds, objectives; see deploy/policy.example.toml and docs/policy.md. "
        "'demo' is the demo's policy (targets in seconds). Without it: built-in targets, "
        "around the clock (env SERVICEWATCH_POLICY)",
    )
    parser.add_argument(
        "--partitions", type=int, default=base.partitions,
        help="partitions to create the topics with; one worker per partition at most "
        f"(default: {base.partitions}; env SERVICEWATCH_PARTITIONS)",
    )
    parser.add_argument(
        "--web-port", type=int, default=base.web_port,
        help=f"port of the worker's web server with /metrics (default: {base.web_port}; env SERVICEWATCH_WEB_PORT)",
    )
    parser.add_argument(
        "--web-host", default=base.web_host,
        help=f"address the web server binds; 0.0.0.0 in containers (default: {base.web_host})",
    )
    parser.add_argument(
        "--grace", type=float, default=base.grace_seconds, dest="grace_seconds",
        help="seconds a delivery may take to reach Kafka and still count as on time "
        f"(default: {base.grace_seconds:g}; env SERVICEWATCH_GRACE_SECONDS)",
    )
    parser.add_argument(
        "--at-risk", type=float, default=base.at_risk_seconds, dest="at_risk_seconds",
        help="an open promise due within this many seconds counts as at risk, unless the "
        "policy file sets at_risk "
        f"(default: {base.at_risk_seconds:g}; env SERVICEWATCH_AT_RISK_SECONDS)",
    )
    parser.add_argument(
        # A string default goes through type= as well, so SERVICEWATCH_SESSION_TIMEOUT is checked.
        "--session-timeout", type=session_timeout, default=f"{base.session_timeout:g}", metavar="SECONDS",
        help="how long the broker waits for a silent worker (crashed, paused, starved) before "
        "its partitions go to the other workers. Short: a dead worker's deadlines are judged "
        "again sooner. Long: a worker that stalls briefly keeps its partitions instead of "
        "rejoining. Between 6 and 90 "
        f"(default: {base.session_timeout:g}; env SERVICEWATCH_SESSION_TIMEOUT)",
    )
    parser.add_argument(
        "--log-level", default=base.log_level, choices=["debug", "info", "warning", "error"],
        help=f"worker log level (default: {base.log_level})",
    )


def session_timeout(text: str) -> float:
    low, high = defaults.SESSION_TIMEOUT_RANGE
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 10") from None
    if not low <= seconds <= high:
        raise argparse.ArgumentTypeError(
            f"{seconds:g} s is outside {low:g}-{high:g} s (Kafka brokers refuse less than "
            f"{low:g} s by default; more would outlast the worker's {high:g} s request timeout)"
        )
    return seconds


def _settings_from(args: argparse.Namespace) -> Settings:
    fields = {
        name: getattr(args, name)
        for name in ("broker", "topic", "partitions", "web_port", "web_host", "grace_seconds",
                     "at_risk_seconds", "log_level", "ingest_token", "ingest_max_bytes",
                     "policy_path", "findings_topic_name", "session_timeout")
        if hasattr(args, name)
    }
    return replace(Settings(), **fields)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicewatch", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run everything locally: embedded broker, a worker and simulated traffic",
        description="Start an embedded Kafka-compatible broker (Tansu) on 127.0.0.1, a worker "
        "and simulated traffic, print where /metrics is and a live summary. Ctrl-C stops all three.",
    )
    run.add_argument(
        "--broker-port", type=int, default=9092,
        help="port for the embedded broker on 127.0.0.1 (default: 9092)",
    )
    run.add_argument(
        "--broker-kind", choices=["tansu", "kafka"], default="tansu",
        help="tansu: the embedded broker (default); kafka: a real Apache Kafka 4.x, "
        "resolved with Maven on first use (needs Java 17+ and Maven)",
    )
    run.add_argument(
        "--rate", type=float, default=5.0,
        help="simulated customer cases started per second (default: 5)",
    )
    run.add_argument(
        "--duration", type=float, default=None,
        help="stop by itself after this many seconds (default: run until Ctrl-C)",
    )
    _add_worker_options(run, with_broker=False)

    worker = commands.add_parser(
        "worker", help="run a worker against a Kafka broker",
        description="Consume the events topic, judge every promise and response, and serve "
        "/metrics. Start more workers with the same settings to share the partitions.",
    )
    _add_worker_options(worker)
    worker.add_argument(
        "--ingest-token", default=Settings().ingest_token, metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on POST /events, the HTTP ingest (default: "
        "none, the endpoint is open; env SERVICEWATCH_INGEST_TOKEN, which is preferable: "
        "command lines are visible to other users in ps)",
    )
    worker.add_argument(
        "--ingest-max-bytes", type=int, default=Settings().ingest_max_bytes, metavar="BYTES",
        help="largest request body POST /events takes; bigger ones get 413 "
        f"(default: {defaults.DEFAULT_INGEST_MAX_BYTES}; env SERVICEWATCH_INGEST_MAX_BYTES)",
    )

    simulate = commands.add_parser(
        "simulate", help="send realistic simulated traffic to a topic",
        description="Send realistic cases (greetings, responses, promises and their deliveries, "
        "some late, some never) to the events topic, in real time.",
    )
    simulate.add_argument("--broker", default=Settings().broker, help="Kafka bootstrap URL (env SERVICEWATCH_BROKER)")
    simulate.add_argument("--topic", default=Settings().topic, help="events topic (env SERVICEWATCH_TOPIC)")
    simulate.add_argument("--rate", type=float, default=5.0, help="cases started per second (default: 5)")
    simulate.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--late-share", type=float, default=0.15, help="share of promises delivered late (default: 0.15)")
    simulate.add_argument("--never-share", type=float, default=0.05, help="share of promises never delivered (default: 0.05)")
    simulate.add_argument("--seed", type=int, default=None, help="random seed, for repeatable traffic")

    from streams.emit_commands import add_commands as add_emit_commands

    add_emit_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from streams.errors import friendly_errors

    with friendly_errors():
        if args.command == "worker":
            from streams.worker import run_worker

            run_worker(_settings_from(args))
        elif args.command == "simulate":
            from streams.simulate_command import simulate

            simulate(args)
        elif args.command == "run":
            from streams.local_stack import run_local_stack

            run_local_stack(args, _settings_from(args))
        elif args.command in ("emit", "replay", "validate", "schema"):
            from streams.emit_commands import run as run_emit_command

            return run_emit_command(args)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
