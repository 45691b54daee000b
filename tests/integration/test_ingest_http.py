"""End to end: events emitted from outside reach a real worker's numbers, by every road.

One worker per broker (Tansu and Apache Kafka), started with an ingest token, serves every test
in this module. Each test uses its own team, so its numbers are its own:

* HTTP ``POST /events``: one object, an array, NDJSON; per-item errors by index and field with
  the valid items still written; 413 over the size limit (declared or chunked); 401/403 for the
  token; ``/openapi.yaml``; and a few hundred hostile requests that must never get a 5xx nor
  lose the valid events among them;
* the Python emitter (``schemas.emitter.Emitter``): a kept and a missed promise;
* the CLI: ``servicewatch emit``, and ``servicewatch replay`` of history stamped with its own
  times, judged as it happened;
* the runnable examples (Python, curl).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from schemas.emitter import Emitter
from streams.embedded_broker import free_port
from streams.ingest import DEFAULT_MAX_BYTES, IngestConfig, handle_request, openapi_document
from streams.topics import TopicSpec, ensure_topics
from tests.integration.harness import WorkerProcess, unique_name, value, wait_for

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
SETTLE = 90.0  # generous: two cores are shared with other test runs
OUTCOMES = "servicewatch_promise_outcomes_total"
LATE = "servicewatch_late_deliveries_total"
OPEN = "servicewatch_promises_open"
UTC = timezone.utc


@pytest.fixture(scope="module")
def ingest_worker(broker, tmp_path_factory):
    """A worker with an ingest token, holding (and caught up on) every partition."""
    directory = tmp_path_factory.mktemp("ingest")
    worker = WorkerProcess(
        broker_url=broker.url, topic=unique_name("events"), app_id=unique_name("sw-ingest"),
        web_port=free_port(), data_dir=directory / "data", log_path=directory / "worker.log",
        partitions=2, extra_args=(f"--ingest-token={TOKEN}",),  # "=": a token may start with "-"
    )
    worker.start()
    try:
        worker.first_scrape = worker.wait_until_serving(SETTLE)
        worker.wait_until_caught_up(SETTLE)
        yield worker
    finally:
        worker.stop(timeout=15.0)


TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- helpers ----------------------------------------------------------------------------------------
def request(worker, method: str, path: str, body=None, headers=None, timeout: float = 30.0):
    """(status, parsed JSON or raw bytes, headers) of one HTTP request to the worker."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.web_port, timeout=timeout)
    try:
        chunked = body is not None and not isinstance(body, (bytes, str))
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, parsed, dict(response.getheaders())
    finally:
        connection.close()


def post(worker, body, content_type: str = "application/json", headers=None):
    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    return request(worker, "POST", "/events", raw, {"Content-Type": content_type, **AUTH, **(headers or {})})


def ev(type_: str, case_id: str, team: str, occurred_at: datetime | None = None, **fields) -> dict:
    body = {"event_id": f"ev-{uuid.uuid4().hex}", "type": type_,
            "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(), "case_id": case_id,
            "team": team, "channel": "chat"}
    body.update({name: v.isoformat() if isinstance(v, datetime) else v for name, v in fields.items()})
    return body


def in_(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def settle(worker, expected: dict[tuple, float], what: str) -> None:
    """Wait until every ``{(metric, labels...): value}`` holds on /metrics."""
    last = {}

    def reached():
        metrics = last["metrics"] = worker.scrape()
        last["wrong"] = [f"{name}{dict(labels)}: got {value(metrics, name, **dict(labels))}, want {want}"
                         for (name, *labels), want in expected.items()
                         if value(metrics, name, **dict(labels)) != want]
        return not last["wrong"]

    wait_for(reached, SETTLE, what,
             lambda: "\n  " + "\n  ".join(last.get("wrong", [])) + worker.context(last.get("metrics")))


def outcome(team: str, result: str, kind: str = "callback", audience: str = "external") -> tuple:
    return (OUTCOMES, ("team", team), ("kind", kind), ("audience", audience), ("outcome", result))


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: v for name, v in os.environ.items() if not name.startswith("SERVICEWATCH_")}
    env.update(extra)
    return env


# -- HTTP ingest ------------------------------------------------------------------------------------
def test_one_event_an_array_and_ndjson_are_accepted_and_judged(ingest_worker):
    team = "http-ok"
    status, answer, _ = post(ingest_worker, ev("promise", "case-h1", team, promise_id="h1",
                                               due_at=in_(120), kind="callback"))
    assert (status, answer) == (202, {"accepted": 1, "rejected": []})

    status, answer, _ = post(ingest_worker, [
        ev("greeting", "case-h2", team, contact_at=in_(-20)),
        ev("response", "case-h2", team, requested_at=in_(-60), priority="high"),
        ev("promise", "case-h2", team, promise_id="h2", due_at=in_(120), kind="callback"),
    ])
    assert (status, answer) == (202, {"accepted": 3, "rejected": []})

    ndjson = "\n".join(json.dumps(ev("delivery", case, team, promise_id=pid))
                       for case, pid in (("case-h1", "h1"), ("case-h2", "h2"))) + "\n"
    status, answer, _ = post(ingest_worker, ndjson.encode(), "application/x-ndjson")
    assert (status, answer) == (202, {"accepted": 2, "rejected": []})

    settle(ingest_worker, {
        outcome(team, "on_time"): 2, outcome(team, "missed"): 0,
        ("servicewatch_greeting_seconds_count", ("team", team), ("channel", "chat"), ("audience", "external")): 1,
        ("servicewatch_response_seconds_count", ("team", team), ("channel", "chat"), ("audience", "external")): 1,
    }, "the HTTP-posted promises kept on time")


def test_per_item_errors_name_index_and_field_and_the_valid_items_still_count(ingest_worker):
    team = "http-mixed"
    batch = [
        ev("promise", "case-m1", team, promise_id="m1", due_at=in_(120), kind="callback"),
        ev("promise", "case-m2", team, promise_id="m2", due_at="2026-11-28T15:00:00", kind="callback"),
        42,
        ev("delivery", "case-m1", team, promise_id="m1"),
        ev("promise", "case-m3", "not a team", promise_id="m3", due_at=in_(120), kind="callback"),
    ]
    status, answer, _ = post(ingest_worker, batch)
    assert status == 207, answer
    assert answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "due_at"), (2, None), (4, "team")]
    assert "time zone" in answer["rejected"][0]["error"]

    lines = [json.dumps(ev("promise", "case-m4", team, promise_id="m4", due_at=in_(120), kind="callback")),
             "", "{not json", json.dumps(ev("delivery", "case-m4", team, promise_id="m4", kind="x"))]
    status, answer, _ = post(ingest_worker, "\n".join(lines).encode(), "application/x-ndjson")
    assert status == 207, answer
    assert [(r["index"], r["line"], r["field"]) for r in answer["rejected"]] == [(1, 3, None), (2, 4, "kind")]

    status, answer, _ = post(ingest_worker, [{"type": "promise"}, "nope"])
    assert status == 400 and answer["accepted"] == 0 and len(answer["rejected"]) == 2
    status, answer, _ = post(ingest_worker, b"{this is not json")
    assert status == 400 and "not valid JSON" in answer["error"]

    # m1 was written and kept; m4 was written and is still open (its delivery was refused).
    settle(ingest_worker, {
        outcome(team, "on_time"): 1,
        (OPEN, ("team", team), ("kind", "callback"), ("audience", "external")): 1,
    }, "only the accepted items of the mixed batches in the numbers")


def test_bodies_over_the_limit_get_413(ingest_worker):
    status, answer, _ = post(ingest_worker, b" " * (DEFAULT_MAX_BYTES + 1))
    assert status == 413 and "1048576 bytes" in answer["error"]

    def chunks():  # no Content-Length: the worker must stop reading at the limit
        for _ in range(3 * DEFAULT_MAX_BYTES // 65536):
            yield b" " * 65536

    status, answer, headers = request(ingest_worker, "POST", "/events", chunks(),
                                      {"Content-Type": "application/json", **AUTH})
    assert status == 413 and answer["accepted"] == 0
    assert "Content-Length" not in headers or int(headers["Content-Length"]) < 1000
    # Just under the limit is read and judged.
    padded = json.dumps(ev("delivery", "case-big", "http-big", promise_id="p")).encode()
    status, answer, _ = post(ingest_worker, padded + b" " * (DEFAULT_MAX_BYTES - len(padded)))
    assert status == 202, answer


def test_the_token_is_required(ingest_worker):
    event = json.dumps(ev("delivery", "case-t", "http-auth", promise_id="p")).encode()
    status, answer, headers = request(ingest_worker, "POST", "/events", event)
    assert status == 401 and "Bearer" in answer["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, answer, _ = request(ingest_worker, "POST", "/events", event,
                                {"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert status == 403 and answer["accepted"] == 0
    status, _, _ = request(ingest_worker, "POST", "/events", event, {"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    status, answer, _ = request(ingest_worker, "POST", "/events", event, AUTH)
    assert status == 202, answer
    metrics = ingest_worker.scrape()
    assert value(metrics, "servicewatch_ingest_requests_total", status="401") >= 2
    assert value(metrics, "servicewatch_ingest_requests_total", status="403") >= 1


def test_the_endpoint_describes_itself(ingest_worker):
    status, text, headers = request(ingest_worker, "GET", "/openapi.yaml")
    assert status == 200 and headers["Content-Type"].startswith("application/yaml")
    assert text.decode() == (REPO / "openapi" / "ingest.yaml").read_text()
    status, document, _ = request(ingest_worker, "GET", "/openapi.json")
    assert status == 200 and document == json.loads(json.dumps(openapi_document()))
    status, _, _ = request(ingest_worker, "GET", "/events")
    assert status == 405


def hostile_bodies(rng: random.Random, valid) -> list[tuple[bytes, str]]:
    """(body, content type) pairs: garbage of every kind, some carrying valid events."""
    def valid_event():
        event = valid()
        return json.dumps(event, ensure_ascii=rng.random() < 0.5)

    garbage_items = ["42", "null", '"\\u0000"', "[]", "{}", '{"type": "promise"}', '{"type": "\\ud800"}',
                     "9" * 5000, '{"event_id": ' + "[" * 3000 + "]" * 3000 + "}", "1e999",
                     json.dumps({"type": "delivery", "team": "\u202e\U0001F600", "case_id": "\x00"}),
                     '{"a": "' + "x" * 70_000 + '"}']
    bodies = []
    for _ in range(160):
        shape = rng.randrange(9)
        if shape == 0:
            bodies.append((rng.randbytes(rng.randrange(1, 4000)), rng.choice(["application/json", "application/x-ndjson", ""])))
        elif shape == 1:
            depth = rng.randrange(1, 100_000)
            bodies.append((("[" * depth + "]" * depth).encode(), "application/json"))
        elif shape in (2, 3):
            items = [valid_event() if rng.random() < 0.5 else rng.choice(garbage_items) for _ in range(rng.randrange(1, 12))]
            bodies.append((("[" + ",".join(items) + "]").encode("utf-8", "surrogatepass"), "application/json"))
        elif shape in (4, 5):
            items = [valid_event() if rng.random() < 0.5 else rng.choice(garbage_items + ["{oops", "\x00\x01"]) for _ in range(rng.randrange(1, 12))]
            bodies.append(("\n".join(items).encode("utf-8", "surrogatepass"), "application/x-ndjson"))
        elif shape == 6:
            raw = bytearray(valid_event().encode())
            for _ in range(rng.randrange(1, 5)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            bodies.append((bytes(raw), "application/json"))
        elif shape == 7:
            bodies.append(((valid_event() + "\n") * rng.randrange(1, 4) + "\x00" * rng.randrange(3), rng.choice(["", "text/plain"])))
        else:
            bodies.append((rng.choice([b"", b" ", b"\xef\xbb\xbf", b"[", b"]", b"{}{}", b"\r\n\r\n"]), "application/json"))
    return [(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body, ctype) for body, ctype in bodies]


def test_hostile_requests_never_get_a_5xx_and_lose_no_valid_event(ingest_worker):
    team = "http-fuzz"
    rng = random.Random(20261128)
    def valid():
        promise_id = f"fz-{rng.getrandbits(48):x}"
        return ev("promise", f"case-{promise_id}", team, promise_id=promise_id, due_at=in_(3600), kind="refund")

    config = IngestConfig(token=TOKEN)
    accepted_ids: set[str] = set()
    for index, (raw, content_type) in enumerate(hostile_bodies(rng, valid)):
        headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
        status, answer, _ = request(ingest_worker, "POST", "/events", raw, headers)
        assert status in (202, 207, 400, 413), f"request {index}: HTTP {status} {answer!r} for {raw[:200]!r}"
        # The live endpoint decides exactly as the pure handler the unit tests fuzz.
        expected = handle_request(raw, headers, config)
        assert (status, answer) == (expected.status, expected.body), f"request {index}: {raw[:200]!r}"
        accepted_ids.update(json.loads(value)["promise_id"] for _, value in expected.records)
    assert ingest_worker.running(), ingest_worker.log_tail()
    assert len(accepted_ids) > 50  # the run did carry valid events
    settle(ingest_worker, {(OPEN, ("team", team), ("kind", "refund"), ("audience", "external")): len(accepted_ids)},
           f"all {len(accepted_ids)} valid promises from the hostile requests open")


# -- the Python emitter -----------------------------------------------------------------------------
def test_emitter_promises_reach_the_worker(ingest_worker, broker):
    team = "emitter"
    with Emitter(broker.url, ingest_worker.topic, source="tests", connect_timeout=30) as emitter:
        emitter.promise(case_id="case-e1", team=team, channel="phone", promise_id="e1",
                        due_at=timedelta(minutes=5), kind="callback", wait=True)
        emitter.delivery(case_id="case-e1", team=team, channel="phone", promise_id="e1")
        emitter.promise(case_id="case-e2", team=team, channel="phone", promise_id="e2",
                        due_at=timedelta(seconds=1), kind="callback")
        # partition_for (which replay uses) names the partition the producer itself chose.
        written = {case: emitter.greeting(case_id=case, team="emitter-partitions", channel="chat",
                                          contact_at=datetime.now(UTC)).get(timeout=30).partition
                   for case in (f"case-p{n}" for n in range(12))}
        assert written == {case: emitter.partition_for(case) for case in written}
        assert len(set(written.values())) > 1, written
        # One event where another partitioner would put it: counted, and still processed.
        emitter.send(ev("greeting", "case-p0", "emitter-misplaced", contact_at=datetime.now(UTC)),
                     partition=1 - emitter.partition_for("case-p0"), wait=True)
    greetings = ("servicewatch_greeting_seconds_count", ("team", "emitter-misplaced"), ("channel", "chat"),
                 ("audience", "external"))
    settle(ingest_worker, {outcome(team, "on_time"): 1, outcome(team, "missed"): 1,
                           ("servicewatch_events_misplaced_total",): 1, greetings: 1},
           "the emitted promise kept, the undelivered one missed, the misplaced greeting counted")


def test_every_worker_of_a_group_counts_misplaced_events(start_worker, broker):
    # Only the group leader has Faust's partition-count snapshot: the check must not depend on it.
    workers = [start_worker(partitions=4, ready_timeout=SETTLE) for _ in range(2)]

    def held(worker) -> set[str]:
        return {dict(labels)["partition"] for (name, labels) in worker.scrape()
                if name == "servicewatch_partition_time_seconds"}

    wait_for(lambda: all(held(w) for w in workers) and set().union(*map(held, workers)) == set("0123"),
             SETTLE, "both workers holding partitions")
    with Emitter(broker.url, workers[0].topic, connect_timeout=30) as emitter:
        for partition in range(4):  # one greeting on each partition, away from where murmur2 puts it
            case = next(f"case-m{n}" for n in range(100) if emitter.partition_for(f"case-m{n}") != partition)
            emitter.send(ev("greeting", case, "misplaced", contact_at=datetime.now(UTC)),
                         partition=partition, wait=True)

    def counted():
        found = [value(w.scrape(), "servicewatch_events_misplaced_total") or 0 for w in workers]
        return found if sum(found) == 4 and all(found) else None

    wait_for(counted, SETTLE, "each worker counting the misplaced events on its partitions",
             lambda: f" (per worker: {[value(w.scrape(), 'servicewatch_events_misplaced_total') for w in workers]})")


# -- the CLI ----------------------------------------------------------------------------------------
def servicewatch(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), cwd=REPO)


def test_emit_command_sends_to_the_broker(ingest_worker, broker):
    team = "cli-emit"
    common = ["--broker", broker.url, "--topic", ingest_worker.topic, "--case-id", "case-c1",
              "--team", team, "--channel", "email", "--promise-id", "c1", "--timeout", "30"]
    done = servicewatch("emit", "--type", "promise", "--kind", "refund", "--due-at", "+10m", *common)
    assert done.returncode == 0, done.stderr
    assert "sent promise" in done.stderr and json.loads(done.stdout)["promise_id"] == "c1"
    done = servicewatch("emit", "--type", "delivery", *common)
    assert done.returncode == 0, done.stderr
    settle(ingest_worker, {outcome(team, "on_time", kind="refund"): 1}, "the CLI-emitted promise kept")


def test_replay_backfills_history_judged_as_it_happened(start_worker, broker, tmp_path):
    # A fresh topic: a partition's record time never goes back, so history must reach partitions
    # before live events do (docs/emitting.md, "Backfills").
    worker = start_worker(partitions=2, ready_timeout=SETTLE)
    worker.wait_until_caught_up(SETTLE)
    team = "replay"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    history = [
        ev("promise", "case-r1", team, at(0), promise_id="r1", due_at=at(60), kind="visit"),
        ev("promise", "case-r2", team, at(1), promise_id="r2", due_at=at(30), kind="visit"),
        ev("promise", "case-r3", team, at(2), promise_id="r3", due_at=at(20), kind="visit"),
        ev("delivery", "case-r1", team, at(40), promise_id="r1"),   # 20 minutes early: on time
        ev("delivery", "case-r3", team, at(50), promise_id="r3"),   # 30 minutes late
    ]                                                              # r2: never delivered
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in history))
    expected = {
        outcome(team, "on_time", kind="visit"): 1, outcome(team, "missed", kind="visit"): 2,
        (LATE, ("team", team), ("kind", "visit"), ("audience", "external")): 1,
    }
    # Paced (50 minutes of history in 5 s), so the worker finds each partition caught up
    # between the promises and their deliveries: the records' hold keeps it from jumping to now.
    done = servicewatch("replay", str(path), "--broker", broker.url, "--topic", worker.topic,
                        "--timeout", "30", "--speed", "600")
    assert done.returncode == 0, done.stderr
    assert "replayed 5 events" in done.stderr and "100% 5/5" in done.stderr
    settle(worker, expected, "three-hour-old history judged by its own times")

    # Replaying the same file again counts nothing twice.
    done = servicewatch("replay", str(path), "--broker", broker.url, "--topic", worker.topic, "--quiet")
    assert done.returncode == 0, done.stderr
    settle(worker, {**expected, ("servicewatch_events_duplicate_total",): 5}, "the second replay dropped as repeats")


def test_replay_refuses_a_topic_stamped_on_arrival(broker, tmp_path):
    topic = unique_name("appended")
    ensure_topics(broker.bootstrap, [TopicSpec(topic, 1, {"message.timestamp.type": "LogAppendTime"})])
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(ev("promise", "case-a1", "appended", datetime.now(UTC) - timedelta(hours=1),
                                  promise_id="a1", due_at=datetime.now(UTC), kind="visit")) + "\n")
    done = servicewatch("replay", str(path), "--broker", broker.url, "--topic", topic, "--timeout", "30")
    assert done.returncode == 1 and "LogAppendTime" in done.stderr and "nothing was sent" in done.stderr, done.stderr


# -- the examples -----------------------------------------------------------------------------------
def test_the_python_example_runs(ingest_worker, broker):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "emit_promise.py"), "--team", "example-py",
         "--due-in", "30"], capture_output=True, text=True, timeout=120, cwd=REPO,
        env=clean_env(SERVICEWATCH_BROKER=broker.url, SERVICEWATCH_TOPIC=ingest_worker.topic))
    assert done.returncode == 0, done.stdout + done.stderr
    settle(ingest_worker, {outcome("example-py", "on_time"): 1}, "the Python example's promise kept")


def test_the_curl_example_runs(ingest_worker):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(
        ["sh", str(REPO / "examples" / "curl" / "post_events.sh")], capture_output=True, text=True,
        timeout=120, cwd=REPO,
        env=clean_env(SERVICEWATCH_URL=f"http://127.0.0.1:{ingest_worker.web_port}",
                      SERVICEWATCH_INGEST_TOKEN=TOKEN, TEAM="example-curl"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("-> HTTP 202") == 2 and done.stdout.count("-> HTTP 207") == 1, done.stdout
    settle(ingest_worker, {
        outcome("example-curl", "on_time"): 1,
        ("servicewatch_greeting_seconds_count", ("team", "example-curl"), ("channel", "phone"), ("audience", "external")): 1,
    }, "the curl example's events in the numbers")
