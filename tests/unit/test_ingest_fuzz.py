"""POST /events without HTTP: the pure request handler, fuzzed, and the answers it must give.

`handle_request` (body bytes + headers -> status, answer, records to produce) is everything the
endpoint decides; the live-worker tests in tests/integration/test_ingest_http.py cover the I/O
around it. Properties checked on thousands of generated requests:

* it never raises and never answers outside its documented statuses (so no 500);
* every record it would produce is one the worker accepts, keyed by its case id;
* it loses no valid event: in a mixed batch exactly the items the worker's own decoder accepts
  are produced, in order, and every other item is reported with its index;
* oversized bodies are refused whole, and only the configured token opens the door.

The validator behind `servicewatch validate` (`check_lines`) gets the same treatment.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas import InvalidEvent, decode_event
from schemas.emitter import event_record
from streams.emit_commands import check_lines
from streams.ingest import (
    DEFAULT_MAX_BYTES,
    MAX_ITEMS,
    STATUSES,
    IngestConfig,
    handle_request,
    openapi_document,
    openapi_yaml,
    to_yaml,
)

try:
    import yaml
except ImportError:  # not a servicewatch dependency; the YAML tests below are then not defined
    yaml = None

OPEN = IngestConfig()
REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_BATCHES = settings(FUZZ, max_examples=500)  # each example is a whole batch
NDJSON = {"Content-Type": "application/x-ndjson"}


def good(event_id: str = "e-1", **changes) -> dict:
    event = {"event_id": event_id, "type": "promise", "occurred_at": "2026-11-28T14:00:00Z",
             "case_id": "case-42", "team": "billing", "channel": "phone",
             "promise_id": "case-42-callback", "due_at": "2026-11-28T15:00:00+01:00",
             "kind": "callback"}
    event.update(changes)
    return {key: value for key, value in event.items() if value is not ...}


def body(value) -> bytes:
    return json.dumps(value).encode()


def worker_accepts(raw: bytes) -> bool:
    try:
        decode_event(raw)
        return True
    except InvalidEvent:
        return False


def check_invariants(result, config: IngestConfig = OPEN) -> None:
    """What holds for every answer, whatever the request."""
    assert result.status in STATUSES and result.status != 503  # 503 only comes from producing
    answer = json.loads(json.dumps(result.body))  # serialisable as is
    assert answer["accepted"] == len(result.records)
    assert isinstance(answer["rejected"], list)
    if result.status == 202:
        assert answer["rejected"] == []
    elif result.status == 207:
        assert result.records and answer["rejected"]
    else:
        assert result.records == []
    if result.status in (401, 403, 413) or "error" in answer:
        assert result.records == [] and answer["rejected"] == [] and answer["error"]
    indexes = [entry["index"] for entry in answer["rejected"]]
    assert indexes == sorted(set(indexes)) and all(isinstance(i, int) and i >= 0 for i in indexes)
    for entry in answer["rejected"]:
        assert entry["field"] is None or isinstance(entry["field"], str)
        assert isinstance(entry["error"], str) and entry["error"]
        assert len(entry["error"]) <= 300 and (entry["field"] is None or len(entry["field"]) <= 128)
    for key, value in result.records:
        event = decode_event(value)  # the worker accepts it...
        assert key == event.case_id.encode()  # ...with the key it checks
        assert len(value) <= config.max_event_bytes


# -- examples ---------------------------------------------------------------------------------------
def test_one_event_is_accepted_and_produced_as_the_emitter_sends_it():
    result = handle_request(body(good()), {"Content-Type": "application/json"}, OPEN)
    assert (result.status, result.body) == (202, {"accepted": 1, "rejected": []})
    assert result.records == [event_record(decode_event(body(good())))]
    assert result.records[0][0] == b"case-42"


def test_a_pretty_printed_event_is_one_event():
    result = handle_request(json.dumps(good(), indent=2).encode(), {}, OPEN)
    assert result.status == 202 and len(result.records) == 1


def test_an_array_is_judged_item_by_item():
    items = [good("e-1"), good("e-2", due_at="2026-11-28T15:00:00"), 42, good("e-3"),
             good("e-4", type="refund"), good("e-5", team=None)]
    result = handle_request(body(items), {}, OPEN)
    assert result.status == 207
    assert result.body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in result.body["rejected"]] == [
        (1, "due_at"), (2, None), (4, "type"), (5, "team")]
    assert "time zone" in result.body["rejected"][0]["error"]
    assert [json.loads(value)["event_id"] for _, value in result.records] == ["e-1", "e-3"]


def test_several_problems_in_one_item_are_all_listed():
    result = handle_request(body([good(team="bad team", kind="soon", promise_id=...)]), {}, OPEN)
    entry = result.body["rejected"][0]
    assert result.status == 400 and entry["index"] == 0
    assert {problem["field"] for problem in entry["errors"]} == {"team", "kind", "promise_id"}


def test_ndjson_by_content_type_reports_lines():
    text = "\r\n".join([json.dumps(good("e-1")), "", json.dumps(good("e-2", kind="x")), "  ",
                        "{not json", json.dumps(good("e-3"))]) + "\n"
    result = handle_request(text.encode(), {"content-type": "application/x-ndjson; charset=utf-8"}, OPEN)
    assert result.status == 207 and result.body["accepted"] == 2
    assert [(r["index"], r["line"], r["field"]) for r in result.body["rejected"]] == [
        (1, 3, "kind"), (2, 5, None)]
    assert result.body["rejected"][1]["error"].startswith("not valid JSON")


def test_ndjson_is_recognised_without_its_content_type():
    text = json.dumps(good("e-1")) + "\n" + json.dumps(good("e-2")) + "\n"
    result = handle_request(text.encode(), {"Content-Type": "application/json"}, OPEN)
    assert result.status == 202 and result.body["accepted"] == 2


def test_two_objects_on_one_line_are_not_guessed_at():
    result = handle_request((json.dumps(good()) + " " + json.dumps(good("e-2"))).encode(), {}, OPEN)
    assert result.status == 400 and "JSON array" in result.body["error"] and not result.records


@pytest.mark.parametrize("raw, words", [
    (b"", "empty"), (b"  \n\t ", "empty"), (b"42", "expected a JSON object"),
    (b'"event"', "expected a JSON object"), (b"null", "expected a JSON object"),
    (b"[", "not valid JSON"), (b"[{}", "expected ',' or ']'"), (b"[{},]", "not valid JSON"),
    (b"[] []", "after the JSON array"), (b"{", "not valid JSON"), (b"\x00", "expected a JSON object"),
    (b"[" * 50_000, "nested too deeply"), (b'{"a":' * 50_000, "nested too deeply"),
])
def test_a_body_that_is_not_events_is_a_400_with_a_reason(raw, words):
    result = handle_request(raw, {}, OPEN)
    assert result.status == 400 and words in result.body["error"]
    check_invariants(result)


def test_an_empty_array_accepts_nothing_and_is_fine():
    result = handle_request(b" [ ] ", {}, OPEN)
    assert (result.status, result.body, result.records) == (202, {"accepted": 0, "rejected": []}, [])


def test_a_byte_order_mark_is_ignored():
    assert handle_request(b"\xef\xbb\xbf" + body(good()), {}, OPEN).status == 202
    assert handle_request(b"\xef\xbb\xbf" + body(good()) + b"\n" + body(good("e2")), NDJSON, OPEN).status == 202


def test_one_item_with_broken_utf8_is_rejected_alone():
    broken = body(good("e-2")).replace(b"billing", b"bill\xffing")
    raw = b"[" + body(good("e-1")) + b"," + broken + b"]"
    result = handle_request(raw, {}, OPEN)
    assert result.status == 207 and result.body["rejected"][0]["index"] == 1
    assert not worker_accepts(broken)


def test_bodies_over_the_limit_are_413_whether_declared_or_not():
    config = IngestConfig(max_bytes=1000)
    small = body(good())
    assert handle_request(small, {}, config).status == 202
    assert handle_request(small, {"Content-Length": "1001"}, config).status == 413
    assert handle_request(small, {"content-length": "9" * 40}, config).status == 413
    assert handle_request(small + b" " * 1000, {}, config).status == 413
    result = handle_request(b"[" + b" " * DEFAULT_MAX_BYTES + b"]", {}, OPEN)
    assert result.status == 413 and "1048576 bytes" in result.body["error"]


def test_more_items_than_allowed_is_413():
    assert handle_request(b"[" + b"1," * MAX_ITEMS + b"1]", {}, OPEN).status == 413
    assert handle_request(b"{}\n" * (MAX_ITEMS + 1), NDJSON, OPEN).status == 413
    result = handle_request(b"[" + b"1," * (MAX_ITEMS - 1) + b"1]", {}, OPEN)
    assert result.status == 400 and len(result.body["rejected"]) == MAX_ITEMS


def test_an_item_over_the_worker_message_limit_is_rejected_like_the_worker_does():
    padded = json.dumps(good(), indent=70_000).encode()
    assert len(padded) > 65536 and not worker_accepts(padded)
    result = handle_request(b"[" + padded + b"," + body(good("e-2")) + b"]", {}, OPEN)
    assert result.status == 207 and "limit is 65536" in result.body["rejected"][0]["error"]


# -- authentication ---------------------------------------------------------------------------------
TOKEN = IngestConfig(token="s3cret-token")


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": ""}, 401), ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "Bearer   "}, 401), ({"Authorization": "Basic czNjcmV0LXRva2Vu"}, 401),
    ({"Authorization": "s3cret-token"}, 401), ({"Authorization": "Bearer s3cret"}, 403),
    ({"Authorization": "Bearer s3cret-token-2"}, 403), ({"Authorization": "Bearer S3CRET-TOKEN"}, 403),
    ({"Authorization": "Bearer s3cret-tökén"}, 403),
    ({"Authorization": "Bearer s3cret-token"}, 202), ({"authorization": "bearer  s3cret-token "}, 202),
    ({"AUTHORIZATION": "BEARER s3cret-token"}, 202),
])
def test_a_configured_token_is_required(headers, status):
    result = handle_request(body(good()), headers, TOKEN)
    assert result.status == status
    if status == 401:
        assert result.headers["WWW-Authenticate"].startswith("Bearer")
    check_invariants(result)


def test_credentials_are_checked_before_the_size():
    result = handle_request(b"x" * 10, {"Content-Length": "999999999"}, TOKEN)
    assert result.status == 401


@FUZZ
@given(token=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       given_token=st.text(max_size=60), scheme=st.sampled_from(["Bearer", "bearer", "Basic", "", "Token"]))
def test_only_the_exact_token_opens(token, given_token, scheme):
    config = IngestConfig(token=token)
    headers = {"Authorization": f"{scheme} {given_token}"}
    result = handle_request(body(good()), headers, config)
    opened = scheme.lower() == "bearer" and given_token.strip(" \t") == token
    assert (result.status == 202) == opened
    check_invariants(result, config)


# -- fuzzing ----------------------------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\u202e", "e\u0301", "\U0001F600" * 5, "\ud800",
                     "x" * 129, "-", "_team", "2026-11-28T15:00:00", "2026-13-45T99:99:99Z",
                     "0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]),
)
field_names = st.sampled_from(["event_id", "type", "occurred_at", "case_id", "team", "channel",
                               "promise_id", "due_at", "kind", "schema_version", "audience",
                               "agent_id", "source", "unknown_field", "contact_at"])


@st.composite
def events(draw) -> object:
    """A valid event, or one with a few fields broken in hostile ways, or any JSON value."""
    kind = draw(st.integers(0, 9))
    if kind >= 8:
        return draw(json_values)
    event = good(event_id=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)),
                 case_id=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)),
                 team=draw(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,10}", fullmatch=True)))
    if draw(st.booleans()):
        event.update(type="delivery", kind=..., due_at=...)
        event = {k: v for k, v in event.items() if v is not ...}
    for _ in range(draw(st.integers(0, 3)) if kind >= 4 else 0):
        name = draw(field_names)
        event[name] = draw(hostile_text | json_values | st.sampled_from([...]))
        if event[name] is ...:
            del event[name]
    return event


def dumps(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@FUZZ
@given(raw=st.binary(max_size=3000), headers=st.dictionaries(
    st.sampled_from(["Content-Type", "content-type", "Content-Length", "Authorization", "X-Other"]),
    st.text(max_size=40) | st.sampled_from(["application/x-ndjson", "application/json", "10", "-1"]),
    max_size=3), token=st.none() | st.just("tok"))
def test_random_bytes_never_crash_and_answer_within_the_contract(raw, headers, token):
    config = IngestConfig(token=token, max_bytes=2000)
    check_invariants(handle_request(raw, headers, config), config)


@FUZZ_BATCHES
@given(items=st.lists(events(), max_size=12), ascii_only=st.booleans(),
       as_array=st.booleans(), declared=st.booleans(), crlf=st.booleans())
def test_a_mixed_batch_produces_exactly_the_valid_items_in_order(items, ascii_only, as_array, declared, crlf):
    raws = [dumps(item, ascii_only) for item in items]
    if as_array:
        raw = b"[" + b", ".join(raws) + b"]"
        headers = {}
    else:
        assume(items)
        raw = (b"\r\n" if crlf else b"\n").join(raws)
        headers = NDJSON if declared else {}
        # Undeclared NDJSON is recognised only when its first line is a complete JSON object.
        assume(declared or (isinstance(items[0], dict) and worker_accepts(raws[0])) or len(items) == 1)
    result = handle_request(raw, headers, OPEN)
    check_invariants(result)
    if not as_array and not declared and len(items) == 1:
        return  # a single non-object body is refused whole; covered by the invariants
    valid = [i for i, r in enumerate(raws) if worker_accepts(r)]
    expected_records = [event_record(decode_event(raws[i])) for i in valid]
    assert result.records == expected_records
    assert [entry["index"] for entry in result.body["rejected"]] == [
        i for i in range(len(items)) if i not in valid]


@FUZZ
@given(item=events(), ascii_only=st.booleans())
def test_one_item_is_accepted_exactly_when_the_worker_accepts_it(item, ascii_only):
    assume(not isinstance(item, list))  # an array is a batch, not one item
    raw = dumps(item, ascii_only)
    result = handle_request(raw, {}, OPEN)
    check_invariants(result)
    assert (result.status == 202) == worker_accepts(raw)


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":', '{"event_id":[']),
       wrap=st.booleans())
def test_deep_nesting_is_refused_without_crashing(depth, opener, wrap):
    closer = {"[": "]", '{"a":': "}", '{"event_id":[': "]}"}[opener]
    inner = opener * depth + "1" + closer * depth
    raw = (f"[{inner}, {json.dumps(good())}]" if wrap else inner).encode()
    result = handle_request(raw, {}, IngestConfig(max_bytes=10**7))
    check_invariants(result, IngestConfig(max_bytes=10**7))


@settings(max_examples=200, deadline=None)
@given(digits=st.integers(1, 400_000), where=st.sampled_from(["schema_version", "team", "top", "item"]))
def test_huge_numbers_are_handled(digits, where):
    number = "9" * digits
    if where == "top":
        raw = number
    elif where == "item":
        raw = f"[{number}, {json.dumps(good())}]"
    else:
        raw = json.dumps(good(**{where: 0})).replace(f'"{where}": 0', f'"{where}": {number}')
    config = IngestConfig(max_bytes=10**7)
    result = handle_request(raw.encode(), {}, config)
    check_invariants(result, config)
    if where == "item":
        assert result.body["accepted"] == 1


@settings(max_examples=100, deadline=None)
@given(size=st.integers(DEFAULT_MAX_BYTES + 1, 3 * DEFAULT_MAX_BYTES), declared=st.booleans(),
       filler=st.sampled_from([b" ", b"[", b"\x00", b"9"]))
def test_oversized_bodies_are_refused_whole(size, declared, filler):
    raw = body(good()) + filler * (size - len(body(good())))
    headers = {"Content-Length": str(len(raw))} if declared else {}
    result = handle_request(raw, headers, OPEN)
    assert result.status == 413 and result.records == []
    check_invariants(result)


# -- the validator behind `servicewatch validate` ---------------------------------------------------
@FUZZ_BATCHES
@given(lines=st.lists(st.binary(max_size=200) | events().map(lambda e: dumps(e, True)), max_size=10))
def test_validate_never_crashes_and_agrees_with_the_worker(lines):
    lines = [line.replace(b"\n", b" ") + b"\n" for line in lines]
    results = list(check_lines(lines))
    numbers = [r.number for r in results]
    assert numbers == sorted(set(numbers))
    for result in results:
        raw = lines[result.number - 1]
        if result.number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        stripped = raw.strip(b" \t\r\n")
        assert stripped  # blank lines are skipped
        assert result.valid == worker_accepts(stripped)
        assert result.valid or (result.errors and all(e.error for e in result.errors))


# -- the OpenAPI description ------------------------------------------------------------------------
def test_the_committed_openapi_file_is_current():
    committed = (REPO / "openapi" / "ingest.yaml").read_text(encoding="utf-8")
    assert committed == openapi_yaml(), "run `python -m streams.ingest openapi/ingest.yaml` and commit it"


def test_the_openapi_document_describes_the_endpoint():
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    post = document["paths"]["/events"]["post"]
    assert set(post["responses"]) == {str(status) for status in STATUSES}
    schemas = document["components"]["schemas"]
    assert {"Event", "Promise", "Delivery", "Greeting", "Response", "IngestResult", "Rejection"} <= set(schemas)
    text = json.dumps(document)
    for ref in set(part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]):
        assert ref in schemas, f"dangling $ref {ref}"


if yaml is not None:

    def test_the_yaml_reads_back_as_the_document():
        assert yaml.safe_load(openapi_yaml()) == json.loads(json.dumps(openapi_document()))

    yaml_keys = st.text(max_size=12) | st.sampled_from(["yes", "no", "on", "null", "202", "$ref", "-x", "a: b", "#"])
    yaml_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=4),
        max_leaves=20,
    )

    @settings(max_examples=200, deadline=None)
    @given(value=st.dictionaries(yaml_keys, yaml_values, max_size=5))
    def test_to_yaml_round_trips_json_like_data(value):
        assert yaml.safe_load(to_yaml(value)) == (value or None)


# -- the Faust view around it -------------------------------------------------------------------------
class FakeStream:
    """aiohttp's request.content: readany() until b""."""

    def __init__(self, chunks, error=None):
        self.chunks, self.error, self.read = list(chunks), error, 0

    async def readany(self):
        if not self.chunks:
            if self.error is not None:
                raise self.error
            return b""
        chunk = self.chunks.pop(0)
        self.read += len(chunk)
        return chunk


class FakeRequest:
    def __init__(self, body=b"", headers=None, chunks=None, error=None):
        self.headers = headers or {}
        self.content = FakeStream(chunks if chunks is not None else [body], error)


class FakeWeb:
    def json(self, value, **options):
        return {"json": value, **options}

    def bytes(self, value, **options):
        return {"bytes": value, **options}


class FakeTopic:
    """A Faust topic whose send either works, fails, or never gets an acknowledgement."""

    def __init__(self, mode="ok"):
        self.mode, self.sent = mode, []

    async def send(self, key=None, value=None, force=False):
        if self.mode == "refuse":
            raise RuntimeError("KafkaConnectionError: no broker")
        self.sent.append((key, value))
        future = asyncio.get_running_loop().create_future()
        if self.mode == "ok":
            future.set_result(("metadata", len(self.sent)))
        return future


class FakeApp:
    def __init__(self):
        self.views = {}

    def page(self, path, name=None):
        def register(view):
            self.views[path] = view
            return view
        return register


def install(topic, **options):
    from prometheus_client import CollectorRegistry

    from streams.ingest import install_ingest

    app, registry = FakeApp(), CollectorRegistry()
    install_ingest(app, topic, registry=registry, **{"token": None, "max_bytes": 1000, **options})
    views = {path: view(app, FakeWeb()) for path, view in app.views.items()}
    return views, registry


def call(view, request):
    return asyncio.run(view.post(request))


def test_the_view_produces_accepted_items_then_answers():
    topic = FakeTopic()
    views, registry = install(topic)
    answer = call(views["/events"], FakeRequest(body([good("e-1"), 5, good("e-2")])))
    assert answer["status"] == 207 and answer["json"]["accepted"] == 2
    assert [json.loads(value)["event_id"] for _, value in topic.sent] == ["e-1", "e-2"]
    assert registry.get_sample_value("servicewatch_ingest_requests_total", {"status": "207"}) == 1
    assert registry.get_sample_value("servicewatch_ingest_events_total", {"result": "accepted"}) == 2
    assert registry.get_sample_value("servicewatch_ingest_events_total", {"result": "rejected"}) == 1


def test_a_large_body_is_judged_off_the_event_loop_with_the_same_answer():
    topic = FakeTopic()
    views, _ = install(topic, max_bytes=DEFAULT_MAX_BYTES)
    items = [good(f"e-{n}", case_id=f"case-{n}") for n in range(600)] + [7]
    raw = body(items)
    assert len(raw) > 64 * 1024
    answer = call(views["/events"], FakeRequest(raw))
    assert answer["status"] == 207 and answer["json"]["accepted"] == 600 and len(topic.sent) == 600
    assert answer["json"] == handle_request(raw, {}, OPEN).body


def test_kafka_refusing_is_a_503_that_invites_a_retry():
    views, registry = install(FakeTopic("refuse"))
    answer = call(views["/events"], FakeRequest(body([good("e-1"), 5])))
    assert answer["status"] == 503 and answer["headers"] == {"Retry-After": "5"}
    assert "Retry the same request" in answer["json"]["error"] and answer["json"]["accepted"] == 0
    assert [r["index"] for r in answer["json"]["rejected"]] == [1]
    assert registry.get_sample_value("servicewatch_ingest_events_total", {"result": "accepted"}) == 0


def test_kafka_not_acknowledging_in_time_is_a_503():
    views, _ = install(FakeTopic("hang"), produce_timeout=0.2)
    answer = call(views["/events"], FakeRequest(body(good())))
    assert answer["status"] == 503 and "timed out" in answer["json"]["error"]


def test_the_body_is_read_only_up_to_the_limit():
    topic = FakeTopic()
    views, _ = install(topic, max_bytes=1000)
    request = FakeRequest(chunks=[b" " * 400] * 100)  # 40 kB, no Content-Length
    answer = call(views["/events"], request)
    assert answer["status"] == 413 and request.content.read <= 1200 and topic.sent == []
    declared = FakeRequest(chunks=[b" " * 400] * 100, headers={"Content-Length": "40000"})
    assert call(views["/events"], declared)["status"] == 413 and declared.content.read == 0


def test_credentials_are_checked_before_reading_the_body():
    views, _ = install(FakeTopic(), token="t0ken\n")  # the newline of a token file is not part of it
    request = FakeRequest(body(good()))
    answer = call(views["/events"], request)
    assert answer["status"] == 401 and request.content.read == 0
    assert call(views["/events"], FakeRequest(body(good()), {"Authorization": "Bearer t0ken"}))["status"] == 202


def test_a_broken_request_stream_is_a_400_not_a_500():
    views, _ = install(FakeTopic())
    answer = call(views["/events"], FakeRequest(chunks=[b"[{"], error=ConnectionResetError("peer gone")))
    assert answer["status"] == 400 and "ConnectionResetError" in answer["json"]["error"]


def test_the_openapi_views_serve_the_document():
    views, _ = install(FakeTopic())
    yaml_answer = asyncio.run(views["/openapi.yaml"].get(FakeRequest()))
    assert yaml_answer["bytes"].decode() == openapi_yaml()
    json_answer = asyncio.run(views["/openapi.json"].get(FakeRequest()))
    assert json.loads(json_answer["bytes"]) == json.loads(json.dumps(openapi_document()))
