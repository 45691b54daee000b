"""`servicewatch emit | replay | validate | schema` without a broker.

Sending goes through a fake Emitter that records what it is given; the integration suite
(tests/integration/test_ingest_http.py) runs emit and replay against real brokers.
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import schemas.emitter as emitter_module
from schemas import decode_event
from schemas.jsonschema import generate_schemas
from schemas.replay_hold import replay_hold_until
from streams.cli import build_parser, main
from streams.emit_commands import check_replay_file, event_from_args, paced, parse_time
from streams.embedded_broker import free_port
from streams.replay_plan import HOLD_MARGIN_SECONDS

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
PROMISE_FLAGS = ["--type", "promise", "--case-id", "c1", "--team", "billing", "--channel", "phone",
                 "--promise-id", "p1", "--kind", "callback", "--due-at", "+2h"]


def event_line(n: int, minutes: float, type_: str = "delivery", **fields) -> str:
    event = {"event_id": f"e-{n}", "type": type_,
             "occurred_at": (NOW + timedelta(minutes=minutes)).isoformat(), "case_id": f"c{n % 3}",
             "team": "billing", "channel": "email", **fields}
    if type_ == "delivery":
        event.setdefault("promise_id", "p")
    return json.dumps(event)


def parse(argv: list[str]):
    return build_parser().parse_args(argv)


class FakeEmitter:
    """Stands in for schemas.emitter.Emitter: records (event, timestamp, sent at) in ``sent``
    and (partition, headers) in ``records``; case ``cN`` goes to partition N % 2."""

    instances: list["FakeEmitter"] = []

    def __init__(self, broker, topic, **options):
        self.broker, self.topic, self.options = broker, topic, options
        self.sent: list[tuple] = []
        self.records: list[tuple] = []
        self.failed = 0
        self.closed = False
        FakeEmitter.instances.append(self)

    def send(self, event, timestamp=None, wait=False, headers=None, partition=None):
        self.sent.append((event, timestamp, time.monotonic()))
        self.records.append((partition, dict(headers or ())))
        metadata = type("Metadata", (), {"topic": self.topic, "partition": 0, "offset": len(self.sent) - 1})
        return type("Emitted", (), {"get": lambda self_, timeout=None: metadata, "event": event})()

    def partition_for(self, case_id):
        return int(case_id[1:]) % 2

    def timestamp_type(self):
        return self.topic_timestamp_type

    topic_timestamp_type = "CreateTime"

    def flush(self, timeout=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


@pytest.fixture
def fake_emitter(monkeypatch):
    FakeEmitter.instances.clear()
    monkeypatch.setattr(emitter_module, "Emitter", FakeEmitter)
    return FakeEmitter.instances


# -- help -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, words", [
    ("emit", ["--due-at", "+2h", "--dry-run", "Kafka key"]),
    ("replay", ["--speed", "occurred_at", "retention.ms", "--skip-invalid"]),
    ("validate", ["FILE:LINE", "Exit status"]),
    ("schema", ["--write", "--openapi", "--type"]),
])
def test_every_command_explains_itself(capsys, command, words):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text
    assert "example" in text


def test_the_top_level_help_lists_the_emitter_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("emit", "replay", "validate", "schema"):
        assert f"servicewatch {command}" in text


# -- times and flags --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("NOW", NOW), ("+2h", NOW + timedelta(hours=2)), ("-90s", NOW - timedelta(seconds=90)),
    ("+1h30m", NOW + timedelta(minutes=90)), ("in 1d", NOW + timedelta(days=1)),
    ("15m ago", NOW - timedelta(minutes=15)), ("+0.5h", NOW + timedelta(minutes=30)),
])
def test_relative_times(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["2026-11-28T15:00:00Z", "2026-11-28T15:00:00", "tomorrow", "+2x"])
def test_other_times_are_left_for_the_model_to_judge(text):
    assert parse_time(text, NOW) == text


def test_an_event_from_flags():
    event = event_from_args(parse(["emit", *PROMISE_FLAGS]), now=NOW)
    assert (event.type, event.case_id, event.promise_id, event.kind) == ("promise", "c1", "p1", "callback")
    assert event.due_at == NOW + timedelta(hours=2) and event.occurred_at == NOW
    assert event.source == "servicewatch-cli" and event.event_id


def test_flags_override_json_and_defaults_fill_the_rest():
    document = {"type": "response", "case_id": "c7", "team": "support", "channel": "email",
                "requested_at": "2026-11-28T13:00:00+01:00", "source": "crm"}
    event = event_from_args(parse(["emit", "--json", json.dumps(document), "--team", "billing",
                                   "--occurred-at", "now"]), now=NOW)
    assert (event.type, event.team, event.source, event.occurred_at) == ("response", "billing", "crm", NOW)


def test_json_from_a_file_and_from_stdin(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"type": "delivery", "case_id": "c", "team": "t", "channel": "web",
                                "promise_id": "p"}))
    assert event_from_args(parse(["emit", "--json", f"@{path}"]), now=NOW).promise_id == "p"
    stdin = io.StringIO(path.read_text())
    assert event_from_args(parse(["emit", "--json", "-"]), now=NOW, stdin=stdin).case_id == "c"


def test_emit_dry_run_prints_the_record(capsys):
    assert main(["emit", "--dry-run", *PROMISE_FLAGS]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "key: c1"
    assert decode_event(out[1]).promise_id == "p1"


@pytest.mark.parametrize("argv, words", [
    (["--case-id", "c1"], "type: give --type"),
    ([*PROMISE_FLAGS, "--team", "two words"], "team: must be letters"),
    ([*PROMISE_FLAGS, "--due-at", "2026-11-28T15:00:00"], "due_at: timestamp has no time zone"),
    (["--type", "delivery", "--case-id", "c"], "team: required field is missing"),
    (["--json", "{nope"], "--json is not valid JSON"),
    (["--json", "[1]"], "must be one JSON object"),
    (["--json", "@/nonexistent/event.json"], "No such file"),
])
def test_emit_names_the_problem_and_sends_nothing(capsys, fake_emitter, argv, words):
    assert main(["emit", *argv]) == 1
    assert words in capsys.readouterr().err
    assert fake_emitter == []


def test_emit_sends_one_event_and_says_where(capsys, fake_emitter):
    assert main(["emit", *PROMISE_FLAGS, "--broker", "kafka://k:9092", "--topic", "t"]) == 0
    (emitter,) = fake_emitter
    assert (emitter.broker, emitter.topic) == ("kafka://k:9092", "t")
    (event, timestamp, _), = emitter.sent
    assert event.promise_id == "p1" and timestamp is None and emitter.closed
    captured = capsys.readouterr()
    assert decode_event(captured.out.splitlines()[0]).event_id == event.event_id
    assert "to t, partition 0, offset 0" in captured.err


def test_emit_without_a_broker_says_so(capsys):
    port = free_port()
    status = main(["emit", *PROMISE_FLAGS, "--broker", f"kafka://127.0.0.1:{port}", "--timeout", "0.5"])
    assert status == 1
    assert f"cannot reach a Kafka broker at 127.0.0.1:{port}" in capsys.readouterr().err


# -- validate ---------------------------------------------------------------------------------------
def test_validate_reports_each_bad_line_with_its_field(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    lines = [event_line(1, 0), "", event_line(2, 1, team="no spaces"), "{broken",
             event_line(3, 2).replace("+00:00", ""), event_line(1, 3), "   "]
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}:3: team: must be letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a metrics label)",
        f"{path}:4: not valid JSON: key must be a string at line 1 column 2",
        f"{path}:5: occurred_at: timestamp has no time zone; add an offset such as +00:00 or Z",
        f"{path}:6: warning: event_id 'e-1' repeats line 1; servicewatch drops repeats",
        f"{path}: 5 events: 2 valid, 3 invalid (1 repeated event_id)",
    ]


def test_validate_passes_a_good_file_and_reads_stdin(tmp_path, capsys, monkeypatch):
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(event_line(n, n) for n in range(5)) + "\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 5 events: 5 valid, 0 invalid\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    assert main(["validate", "-", "--quiet"]) == 0
    assert capsys.readouterr().out == "<stdin>: 5 events: 5 valid, 0 invalid\n"


def test_validate_a_missing_file_is_a_friendly_error(capsys):
    assert main(["validate", "/nonexistent/events.jsonl"]) == 1
    assert "No such file" in capsys.readouterr().err


def test_the_committed_example_files(capsys):
    examples = Path(__file__).resolve().parents[2] / "examples"
    assert main(["validate", str(examples / "events.jsonl")]) == 0
    assert main(["validate", "--quiet", str(examples / "events-with-errors.jsonl")]) == 1


# -- replay -----------------------------------------------------------------------------------------
def test_paced_offsets_follow_event_time_and_never_go_back():
    events = [decode_event(event_line(n, minutes)) for n, minutes in enumerate([0, 1, 0.5, 3, 2])]
    assert [offset for _, offset in paced(events, None)] == [0.0] * 5
    assert [offset for _, offset in paced(events, 60.0)] == [0.0, 1.0, 1.0, 3.0, 3.0]
    assert [offset for _, offset in paced(events, 2.0)] == [0.0, 30.0, 30.0, 90.0, 90.0]


def test_replay_refuses_a_file_with_invalid_lines_unless_told(tmp_path):
    lines = [event_line(1, 0).encode(), b"{nope}", event_line(2, 1).encode()]
    out = io.StringIO()
    with pytest.raises(ValueError, match="1 invalid line.*--skip-invalid"):
        check_replay_file(lines, "f.jsonl", skip_invalid=False, out=out)
    assert out.getvalue().startswith("f.jsonl:2: not valid JSON")
    assert check_replay_file(lines, "f.jsonl", skip_invalid=True, out=io.StringIO()) == 2


def test_replay_stamps_each_record_with_its_occurred_at(tmp_path, capsys, fake_emitter):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(event_line(n, -n * 60) for n in range(20)) + "\n{bad\n")
    assert main(["replay", str(path)]) == 1  # one invalid line: nothing sent
    assert fake_emitter == []
    assert main(["replay", str(path), "--skip-invalid", "--topic", "t"]) == 0
    (emitter,) = fake_emitter
    assert [event.event_id for event, _, _ in emitter.sent] == [f"e-{n}" for n in range(20)]
    assert all(stamp == event.occurred_at for event, stamp, _ in emitter.sent)
    err = capsys.readouterr().err
    assert "100% 20/20 events" in err and "replayed 20 events to t" in err


def test_replay_paces_by_event_time(tmp_path, fake_emitter):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(event_line(n, n / 60) for n in range(3)) + "\n")  # one second apart
    assert main(["replay", str(path), "--speed", "4", "--quiet"]) == 0
    times = [sent_at for _, _, sent_at in fake_emitter[0].sent]
    assert times[1] - times[0] >= 0.24 and times[2] - times[0] >= 0.49


def held_until(record) -> float | None:
    return replay_hold_until(record[1])


@pytest.mark.parametrize("speed, seconds_apart", [([], 0.0), (["--speed", "6000"], 0.1)])
def test_replay_holds_each_partition_until_its_next_record(tmp_path, fake_emitter, speed, seconds_apart):
    # Event n, of case c(n % 3), 10n minutes in; c0 and c2 go to partition 0, c1 to 1.
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(event_line(n, n * 10) for n in range(10)) + "\n")
    before = time.time()
    assert main(["replay", str(path), "--quiet", *speed]) == 0
    after = time.time()
    records = fake_emitter[0].records
    partitions = [partition for partition, _ in records]
    assert partitions == [(n % 3) % 2 for n in range(10)]
    for n, record in enumerate(records):
        following = [m for m in range(n + 1, 10) if partitions[m] == partitions[n]]
        hold = held_until(record)
        if not following:
            assert hold is None, f"the last record of its partition holds nothing: {n} {record}"
            continue
        # Held until the partition's next record is due (at once at max speed), plus the margin.
        started = hold - HOLD_MARGIN_SECONDS - following[0] * seconds_apart
        if seconds_apart:
            assert before - 0.01 <= started <= before + 0.15, (n, record, started - before)
        else:
            assert before - 0.01 <= started <= after + 0.01, (n, record)


def test_replay_refuses_a_topic_that_stamps_records_on_arrival(tmp_path, capsys, fake_emitter, monkeypatch):
    path = tmp_path / "history.jsonl"
    path.write_text(event_line(0, 0) + "\n")
    monkeypatch.setattr(FakeEmitter, "topic_timestamp_type", "LogAppendTime")
    assert main(["replay", str(path), "--topic", "t"]) == 1
    assert fake_emitter[0].sent == []
    err = capsys.readouterr().err
    assert "LogAppendTime" in err and "nothing was sent" in err and "CreateTime" in err


@pytest.mark.parametrize("speed", ["0", "-1", "fast", "inf", "nan"])
def test_replay_speed_must_be_max_or_positive(capsys, speed):
    with pytest.raises(SystemExit):
        main(["replay", "f.jsonl", "--speed", speed])
    assert "expected 'max' or a positive number" in capsys.readouterr().err


def test_replay_of_an_empty_file_sends_nothing(tmp_path, capsys, fake_emitter):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert main(["replay", str(path)]) == 0
    assert fake_emitter == [] and "no events" in capsys.readouterr().err


# -- schema -----------------------------------------------------------------------------------------
def test_schema_prints_the_union_or_one_type(capsys):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == generate_schemas()["event.schema.json"]
    assert main(["schema", "--type", "promise"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Promise"


def test_schema_writes_every_file(tmp_path, capsys):
    assert main(["schema", "--write", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(generate_schemas())
    assert capsys.readouterr().out.count("wrote ") == len(generate_schemas())


def test_schema_prints_the_openapi_description(capsys):
    assert main(["schema", "--openapi"]) == 0
    assert 'openapi: "3.1.0"' in capsys.readouterr().out
