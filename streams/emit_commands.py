"""``servicewatch emit | replay | validate | schema``: the command-line tools for emitters.

* ``emit``     one event from flags or JSON, validated, sent with the Python emitter;
* ``replay``   a JSONL file of events into the topic, each record stamped with its event's
               ``occurred_at`` so history is judged as it happened, as fast as possible or
               paced by the events' own times;
* ``validate`` a JSONL file checked line by line with the worker's own rules;
* ``schema``   the JSON Schemas (or the HTTP ingest's OpenAPI description).

The parsers are built here (:func:`add_commands`) and routed from :mod:`streams.cli`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from schemas.errors import FieldError, InvalidEventError, validate_json_event, validate_python_event
from schemas.events import EVENT_TYPES, Audience, Channel, Envelope, Priority, PromiseKind
from streams.settings import Settings

COMMANDS = ("emit", "replay", "validate", "schema")
CLI_SOURCE = "servicewatch-cli"
_DURATION = r"((?:\d+(?:\.\d+)?[smhd])+)"
_RELATIVE = (  # (pattern, sign)
    (re.compile(rf"^\+{_DURATION}$"), 1), (re.compile(rf"^-{_DURATION}$"), -1),
    (re.compile(rf"^in\s+{_DURATION}$"), 1), (re.compile(rf"^{_DURATION}\s+ago$"), -1),
)
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

EMIT_EPILOG = """\
examples:
  # a promise to call back within two hours, then its delivery
  servicewatch emit --type promise --case-id case-42 --team billing --channel phone \\
      --promise-id case-42-callback --kind callback --due-at +2h
  servicewatch emit --type delivery --case-id case-42 --team billing --channel phone \\
      --promise-id case-42-callback

  # any event as JSON (flags given as well override its fields)
  servicewatch emit --json '{"type": "response", "case_id": "case-7", "team": "support",
      "channel": "email", "requested_at": "2026-11-28T09:00:00+01:00"}'

  # see what would be sent, without Kafka
  servicewatch emit --dry-run --type greeting --case-id c1 --team support --channel chat --contact-at "30s ago"

times: ISO 8601 with a time zone (2026-11-28T15:00:00Z, ...+01:00), "now", or relative to
now: +2h, +1h30m, "in 1d", "90s ago" (a leading minus needs "=": --contact-at=-90s).
event_id defaults to a new UUID, occurred_at to now.
Each event goes to the events topic with the case id as the Kafka key.
"""

REPLAY_EPILOG = """\
The file holds one JSON event per line (JSONL/NDJSON; blank lines are skipped). Every line is
checked first; replay refuses to start if any is invalid (see `servicewatch validate`) unless
--skip-invalid is given.

Each record's Kafka timestamp is its event's occurred_at, so a backfill is judged as it
happened: a delivery made before its promise's deadline counts as on time, however late it is
replayed. Events already in the topic (same event_id) are dropped by the workers, so replaying
a file twice counts nothing twice.

examples:
  servicewatch replay history.jsonl                  # as fast as the broker takes it
  servicewatch replay history.jsonl --speed 60       # one hour of history per minute
  servicewatch replay history.jsonl --speed 1        # in real time, as it happened

Replay history before live events reach the topic, or into a fresh topic: a partition's
record time never goes back, so an old promise replayed into a partition that has seen live
events is already past its deadline there and is counted missed at once. Workers may run
meanwhile: each record but a partition's last holds that partition's time to the history's
until its next record is due, plus 3 minutes (header servicewatch-replay-hold-until), so a
worker that catches up mid-replay judges nothing early. Run one backfill at a time.

A broker deletes records older than the topic's retention.ms by their timestamp: history older
than that may be removed soon after it is written. Apache Kafka refuses timestamps more than an
hour in the future (log.message.timestamp.after.max.ms). More in docs/emitting.md.
"""

VALIDATE_EPILOG = """\
Each line is judged exactly as a worker judges a Kafka message. Invalid lines are reported as
FILE:LINE: field: problem; repeated event_ids are warned about (the worker drops repeats).
Exit status: 0 when every line is valid, 1 otherwise.

example:
  servicewatch validate events.jsonl && servicewatch replay events.jsonl
"""

SCHEMA_EPILOG = """\
examples:
  servicewatch schema                        # the union of all event types (event.schema.json)
  servicewatch schema --type promise         # one event type
  servicewatch schema --write ./schemas      # every *.schema.json file, for code generators
  servicewatch schema --openapi              # the HTTP ingest endpoint (POST /events), OpenAPI 3.1
"""


# -- parsers ----------------------------------------------------------------------------------------
def add_commands(commands: Any) -> None:
    """Add the emitter commands to the ``servicewatch`` subparsers."""
    base = Settings()
    formatter = argparse.RawDescriptionHelpFormatter

    def kafka_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--broker", default=base.broker,
            help=f"Kafka bootstrap URL (default: {base.broker}; env SERVICEWATCH_BROKER)")
        parser.add_argument(
            "--topic", default=base.topic,
            help=f"events topic (default: {base.topic}; env SERVICEWATCH_TOPIC)")
        parser.add_argument(
            "--timeout", type=float, default=10.0,
            help="seconds to wait for the broker and for acknowledgements (default: 10)")

    emit = commands.add_parser(
        "emit", help="send one event, from flags or JSON", formatter_class=formatter,
        epilog=EMIT_EPILOG,
        description="Validate one event with servicewatch's own rules and send it to the events "
        "topic. A mistake is reported by field name and nothing is sent.")
    emit.add_argument("--type", choices=EVENT_TYPES, dest="event_type",
                      help="event type (required unless --json has it)")
    emit.add_argument("--json", metavar="JSON",
                      help="the event as a JSON object; @FILE reads it from a file, - from stdin")
    envelope = emit.add_argument_group("every event")
    envelope.add_argument("--case-id", help="the customer case; also the Kafka message key")
    envelope.add_argument("--team", help="team accountable for the case (a metrics label)")
    envelope.add_argument("--channel", choices=[c.value for c in Channel], help="contact channel")
    envelope.add_argument("--event-id", help="unique event id (default: a new UUID); reuse it when "
                          "re-sending the same event so it is not counted twice")
    envelope.add_argument("--occurred-at", help="when it happened (default: now)")
    envelope.add_argument("--agent-id", help="the person acting (optional)")
    envelope.add_argument("--customer-id", help="the customer (optional)")
    envelope.add_argument("--source", help=f"the emitting system (default: {CLI_SOURCE})")
    envelope.add_argument("--audience", choices=[a.value for a in Audience],
                          help="external (default) or internal (a co-worker is the customer)")
    specific = emit.add_argument_group("per type")
    specific.add_argument("--contact-at", help="greeting: when the customer reached out")
    specific.add_argument("--requested-at", help="response: when the customer asked")
    specific.add_argument("--priority", choices=[p.value for p in Priority],
                          help="greeting, response, inquiry: urgency")
    specific.add_argument("--promise-id",
                          help="promise, delivery, promise_revised, promise_cancelled: the promise's id")
    specific.add_argument("--due-at", help="promise, promise_revised: when it falls due (e.g. +2h)")
    specific.add_argument("--kind", choices=[k.value for k in PromiseKind], help="promise: what was promised")
    specific.add_argument("--reason", help="promise_cancelled: why, in a few words")
    specific.add_argument("--score", type=int, help="feedback: satisfaction, 1 to 5")
    specific.add_argument("--category", help="complaint: what it is about")
    emit.add_argument("--dry-run", action="store_true",
                      help="validate and print the record (key and JSON) without sending it")
    kafka_options(emit)

    replay = commands.add_parser(
        "replay", help="backfill a JSONL file of events, stamped with their own times",
        formatter_class=formatter, epilog=REPLAY_EPILOG,
        description="Send every event of a JSONL file to the events topic, in file order, each "
        "record's Kafka timestamp set to the event's occurred_at. Progress is shown on stderr.")
    replay.add_argument("file", metavar="FILE.jsonl", help="events, one JSON object per line; - reads stdin")
    replay.add_argument(
        "--speed", default="max", type=_speed,
        help="'max' (default): as fast as possible; a number N: N times real time, pacing the "
        "sends by the gaps between the events' occurred_at (1 = as it happened)")
    replay.add_argument("--skip-invalid", action="store_true",
                        help="send the valid lines and report the invalid ones, instead of refusing")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    kafka_options(replay)

    validate = commands.add_parser(
        "validate", help="check a JSONL file of events line by line", formatter_class=formatter,
        epilog=VALIDATE_EPILOG,
        description="Check every line of JSONL files against the event schema and report each "
        "problem with its line and field.")
    validate.add_argument("files", nargs="+", metavar="FILE.jsonl", help="files to check; - reads stdin")
    validate.add_argument("--quiet", action="store_true", help="print only the summary lines")

    schema = commands.add_parser(
        "schema", help="print the event JSON Schemas, or write them to a directory",
        formatter_class=formatter, epilog=SCHEMA_EPILOG,
        description="The JSON Schemas (draft 2020-12) generated from the event models: what "
        "emitters in any language must send. The same files are in schemas/json/.")
    what = schema.add_mutually_exclusive_group()
    what.add_argument("--type", choices=EVENT_TYPES, dest="event_type", help="print only this event type")
    what.add_argument("--write", metavar="DIR", help="write every *.schema.json file into DIR")
    what.add_argument("--openapi", action="store_true",
                      help="print the OpenAPI description of POST /events (HTTP ingest)")


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'max' or a positive number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected 'max' or a positive number, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run one of COMMANDS; return the exit status. Errors an emitter can fix become one line."""
    from schemas.emitter import EmitError

    handler = {"emit": emit, "replay": replay, "validate": validate, "schema": schema}[args.command]
    try:
        return handler(args)
    except (EmitError, InvalidEventError, ReplayRefused, OSError) as error:
        print(f"servicewatch {args.command}: error: {error}", file=sys.stderr)
        return 1


# -- emit -------------------------------------------------------------------------------------------
_FLAG_FIELDS = ("case_id", "team", "channel", "event_id", "occurred_at", "agent_id", "customer_id",
                "source", "audience", "contact_at", "requested_at", "priority", "promise_id",
                "due_at", "kind", "reason", "score", "category")
_TIME_FIELDS = ("occurred_at", "contact_at", "requested_at", "due_at")


def parse_time(text: str, now: datetime) -> datetime | str:
    """``now``, ``+2h``/``-90s``/``+1h30m``/``in 2h``/``90s ago`` (relative to now) as
    datetimes; anything else is
    returned unchanged for the event model to judge (ISO 8601 with a time zone)."""
    stripped = text.strip()
    if stripped.lower() == "now":
        return now
    for pattern, sign in _RELATIVE:
        match = pattern.match(stripped.lower())
        if match is not None:
            seconds = sum(float(amount) * _UNIT_SECONDS[unit]
                          for amount, unit in _RELATIVE_PART.findall(match[1]))
            return now + timedelta(seconds=sign * seconds)
    return text


def event_from_args(args: argparse.Namespace, now: datetime | None = None,
                    stdin: TextIO | None = None) -> Envelope:
    """The validated event that ``emit`` would send."""
    now = now or datetime.now(timezone.utc)
    data: dict[str, Any] = {}
    if args.json is not None:
        data = _read_json_argument(args.json, stdin or sys.stdin)
    for name in _FLAG_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    if args.event_type is not None:
        data["type"] = args.event_type
    if "type" not in data:
        raise InvalidEventError([FieldError("type", "give --type (" + ", ".join(EVENT_TYPES)
                                            + ") or a \"type\" in --json")])
    for name in _TIME_FIELDS:
        if isinstance(data.get(name), str):
            data[name] = parse_time(data[name], now)
    data.setdefault("event_id", _new_event_id())
    data.setdefault("occurred_at", now)
    data.setdefault("source", CLI_SOURCE)
    return validate_python_event(data)


def _new_event_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _read_json_argument(text: str, stdin: TextIO) -> dict[str, Any]:
    if text == "-":
        text, origin = stdin.read(), "stdin"
    elif text.startswith("@"):
        text, origin = Path(text[1:]).read_text(encoding="utf-8"), text[1:]
    else:
        origin = "--json"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidEventError([FieldError(None, f"{origin} is not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise InvalidEventError([FieldError(None, f"{origin} must be one JSON object (one event)")])
    return data


def emit(args: argparse.Namespace) -> int:
    from schemas.emitter import Emitter, event_record

    event = event_from_args(args)
    key, value = event_record(event)
    if args.dry_run:
        print(f"key: {key.decode()}")
        print(value.decode())
        print(f"(dry run: nothing sent to {args.topic})", file=sys.stderr)
        return 0
    with Emitter(args.broker, args.topic, connect_timeout=args.timeout) as emitter:
        metadata = emitter.send(event).get(timeout=args.timeout)
    print(value.decode())
    print(f"sent {event.type} {event.event_id} (case {event.case_id}) to {metadata.topic}, "
          f"partition {metadata.partition}, offset {metadata.offset}", file=sys.stderr)
    return 0


# -- validate ----------------------------------------------------------------------------------------
@dataclass
class LineResult:
    """One non-blank line of a JSONL file: its event, or the problems found."""

    number: int  # 1-based
    event: Envelope | None = None
    errors: list[FieldError] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.event is not None


def check_lines(lines: Iterable[bytes]) -> Iterator[LineResult]:
    """Judge each non-blank line as the worker judges a message. Never raises on content."""
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte-order mark some editors write
        line = raw.strip(b" \t\r\n")
        if not line:
            continue
        try:
            yield LineResult(number, event=validate_json_event(line))
        except InvalidEventError as invalid:
            yield LineResult(number, errors=invalid.errors)


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as handle:
        yield from handle


def validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        shown = "<stdin>" if path == "-" else path
        total = invalid = duplicates = 0
        first_seen: dict[str, int] = {}
        for result in check_lines(_lines(path)):
            total += 1
            if not result.valid:
                invalid += 1
                if not args.quiet:
                    problems = "; ".join(str(error) for error in result.errors)
                    print(f"{shown}:{result.number}: {problems}")
                continue
            event_id = result.event.event_id
            if event_id in first_seen:
                duplicates += 1
                if not args.quiet:
                    print(f"{shown}:{result.number}: warning: event_id {event_id!r} repeats line "
                          f"{first_seen[event_id]}; servicewatch drops repeats")
            else:
                first_seen[event_id] = result.number
        summary = f"{shown}: {total} event{'s' if total != 1 else ''}: {total - invalid} valid, {invalid} invalid"
        if duplicates:
            summary += f" ({duplicates} repeated event_id{'s' if duplicates != 1 else ''})"
        print(summary)
        if invalid:
            status = 1
    return status


# -- replay ------------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line progress bar on a terminal; a line every few seconds elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and getattr(stream, "isatty", lambda: False)()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._interval = 0.1 if self.tty else 5.0

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        share = done / self.total if self.total else 1.0
        width = 30
        filled = int(share * width)
        rate = done / max(now - self.started, 1e-6)
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {done:,}/{self.total:,} events"
                f", {rate:,.0f}/s{(', ' + note) if note else ''}")
        if self.tty:
            self.stream.write(f"\r\033[K{text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _line_source(path: str) -> Any:
    """A callable giving the file's lines afresh each time (stdin is read once and kept)."""
    if path == "-":
        kept = list(sys.stdin.buffer)
        return lambda: iter(kept)
    return lambda: _lines(path)


class ReplayRefused(ValueError):
    """The file has invalid lines and --skip-invalid was not given."""


def check_replay_file(lines: Iterable[bytes], shown: str, skip_invalid: bool,
                      out: TextIO | None = None) -> int:
    """Count the valid events; report invalid lines on ``out`` (default stderr; the first 20)
    and raise ReplayRefused if there are any and ``skip_invalid`` is false."""
    out = out if out is not None else sys.stderr
    valid = invalid = 0
    for result in check_lines(lines):
        if result.valid:
            valid += 1
            continue
        invalid += 1
        if invalid <= 20:
            out.write(f"{shown}:{result.number}: " + "; ".join(str(e) for e in result.errors) + "\n")
    if invalid > 20:
        out.write(f"... and {invalid - 20} more invalid lines\n")
    if invalid and not skip_invalid:
        raise ReplayRefused(f"{invalid} invalid line(s) in {shown}; nothing was sent. Fix them "
                            "(servicewatch validate), or pass --skip-invalid to send the valid ones")
    if invalid:
        out.write(f"skipping {invalid} invalid line(s)\n")
    return valid


def paced(events: Iterable[Envelope], speed: float | None) -> Iterator[tuple[Envelope, float]]:
    """Each event with the seconds after the start at which to send it: 0 at ``max`` speed
    (``None``); otherwise its time since the first event divided by ``speed``, never going back
    (an event older than one before it goes at once)."""
    first: datetime | None = None
    latest = 0.0
    for event in events:
        if speed is None:
            yield event, 0.0
            continue
        if first is None:
            first = event.occurred_at
        latest = max(latest, (event.occurred_at - first).total_seconds() / speed)
        yield event, latest


def replay(args: argparse.Namespace) -> int:
    from schemas.emitter import Emitter
    from schemas.replay_hold import hold_header
    from streams.replay_plan import ReplayPlan

    shown = "<stdin>" if args.file == "-" else args.file
    lines = _line_source(args.file)
    total = check_replay_file(lines(), shown, args.skip_invalid)
    if not total:
        print(f"servicewatch replay: no events in {shown}", file=sys.stderr)
        return 0

    def valid_events() -> Iterator[Envelope]:
        return (result.event for result in check_lines(lines()) if result.valid)

    with Emitter(args.broker, args.topic, connect_timeout=args.timeout) as emitter:
        if emitter.timestamp_type() == "LogAppendTime":
            raise ReplayRefused(
                f"topic {args.topic} stamps records when they arrive (message.timestamp.type="
                "LogAppendTime), so the history would be judged by today's time and its old "
                "promises counted missed; nothing was sent. Replay into a topic with the default "
                "CreateTime (docs/emitting.md, \"Backfills\")")
        plan = ReplayPlan()
        for event, offset in paced(valid_events(), args.speed):
            plan.plan(emitter.partition_for(event.case_id), offset)
        progress = ProgressBar(total, enabled=not args.quiet)
        sent = 0
        started, started_at = time.monotonic(), time.time()
        try:
            for event, offset in paced(valid_events(), args.speed):
                while (wait := started + offset - time.monotonic()) > 0:
                    progress.update(sent, note=f"next event in {wait:,.0f}s")
                    time.sleep(min(wait, 0.5))
                partition = emitter.partition_for(event.case_id)
                hold = plan.hold_for(partition, time.time(), started_at)
                emitter.send(event, timestamp=event.occurred_at, partition=partition,
                             headers=None if hold is None else [hold_header(hold)])
                sent += 1
                if emitter.failed:
                    emitter.flush(args.timeout)  # raises with the first failure
                progress.update(sent, note=f"event time {event.occurred_at:%Y-%m-%d %H:%M:%S}")
            emitter.flush(max(args.timeout, 30.0))
        except KeyboardInterrupt:
            progress.finish(sent)
            print(f"servicewatch replay: interrupted after {sent:,} of {total:,} events; "
                  "replaying the file again is safe (repeats are dropped by event_id)", file=sys.stderr)
            raise
    progress.finish(sent)
    elapsed = time.monotonic() - started
    print(f"replayed {sent:,} events to {args.topic} in {elapsed:,.1f}s", file=sys.stderr)
    return 0


# -- schema ------------------------------------------------------------------------------------------
def schema(args: argparse.Namespace) -> int:
    from schemas.jsonschema import UNION_FILENAME, generate_schemas, write_schemas

    if args.openapi:
        from streams.ingest import openapi_yaml

        sys.stdout.write(openapi_yaml())
        return 0
    if args.write:
        for path in write_schemas(args.write):
            print(f"wrote {path}")
        return 0
    name = f"{args.event_type}.schema.json" if args.event_type else UNION_FILENAME
    sys.stdout.write(generate_schemas()[name])
    return 0
