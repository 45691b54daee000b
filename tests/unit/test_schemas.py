"""The event contract: what decodes, what is rejected and why, and the committed JSON Schemas."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    REJECT_REASONS,
    Channel,
    Complaint,
    Delivery,
    Feedback,
    Greeting,
    Inquiry,
    InvalidEvent,
    Promise,
    PromiseCancelled,
    PromiseKind,
    PromiseRevised,
    Response,
    decode_event,
)
from schemas.jsonschema import SCHEMA_DIR, generate_schemas, write_schemas

try:
    import jsonschema
except ImportError:
    # Not a servicewatch dependency. Where it is missing the validation test below is not
    # defined at all rather than skipped, so CI never reports a skip that hides nothing useful;
    # the drift test still pins the committed files to the models.
    jsonschema = None

NAIVE_MESSAGE = "timestamp has no time zone; add an offset such as +00:00 or Z"

ENVELOPE = {
    "event_id": "evt-1",
    "occurred_at": "2024-05-01T09:30:00+02:00",
    "case_id": "case-42",
    "team": "billing",
    "channel": "email",
}
GOOD_EVENTS = {
    "greeting": {**ENVELOPE, "type": "greeting", "contact_at": "2024-05-01T07:25:00Z"},
    "response": {
        **ENVELOPE,
        "type": "response",
        "requested_at": "2024-05-01T09:00:00+02:00",
        "priority": "high",
        "agent_id": "agent-7",
        "audience": "internal",
    },
    "promise": {
        **ENVELOPE,
        "type": "promise",
        "promise_id": "p-1",
        "due_at": "2024-05-02T12:00:00Z",
        "kind": "callback",
    },
    "delivery": {**ENVELOPE, "type": "delivery", "promise_id": "p-1", "source": "crm"},
    "inquiry": {**ENVELOPE, "type": "inquiry", "priority": "urgent"},
    "promise_revised": {
        **ENVELOPE, "type": "promise_revised", "promise_id": "p-1", "due_at": "2024-05-03T12:00:00Z",
    },
    "promise_cancelled": {
        **ENVELOPE, "type": "promise_cancelled", "promise_id": "p-1", "reason": "customer withdrew",
    },
    "feedback": {**ENVELOPE, "type": "feedback", "score": 4},
    "complaint": {**ENVELOPE, "type": "complaint", "category": "billing error"},
}
MODEL_FOR_TYPE = {
    "greeting": Greeting,
    "response": Response,
    "promise": Promise,
    "delivery": Delivery,
    "inquiry": Inquiry,
    "promise_revised": PromiseRevised,
    "promise_cancelled": PromiseCancelled,
    "feedback": Feedback,
    "complaint": Complaint,
}


def encode(fields: dict) -> bytes:
    return json.dumps(fields).encode()


def rejection(raw: bytes | str, **kwargs) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, **kwargs)
    assert caught.value.reason in REJECT_REASONS
    assert str(caught.value) == f"{caught.value.reason}: {caught.value.detail}"
    return caught.value


def with_fields(event_type: str, **changes) -> bytes:
    return encode({**GOOD_EVENTS[event_type], **changes})


def without_field(event_type: str, name: str) -> bytes:
    return encode({key: value for key, value in GOOD_EVENTS[event_type].items() if key != name})


# --- what decodes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_each_event_type_decodes_to_its_model(event_type):
    event = decode_event(encode(GOOD_EVENTS[event_type]))

    assert type(event) is MODEL_FOR_TYPE[event_type]
    assert event.type == event_type
    assert event.case_id == "case-42"
    assert event.channel is Channel.EMAIL
    assert event.occurred_at == datetime(2024, 5, 1, 7, 30, tzinfo=timezone.utc)


def test_defaults_apply_and_text_input_is_accepted():
    event = decode_event(json.dumps(GOOD_EVENTS["promise"]))

    assert event.kind is PromiseKind.CALLBACK
    assert (event.schema_version, event.audience, event.agent_id) == (1, "external", None)


def test_event_types_and_reject_reasons_are_the_documented_sets():
    assert EVENT_TYPES == (
        "greeting", "response", "promise", "delivery",
        "inquiry", "promise_revised", "promise_cancelled", "feedback", "complaint",
    )
    assert REJECT_REASONS == ("invalid_json", "unknown_type", "schema_violation", "too_large")


def test_event_id_is_stripped():
    assert decode_event(with_fields("delivery", event_id="  evt-9 ")).event_id == "evt-9"


def test_contact_at_equal_to_occurred_at_is_accepted():
    event = decode_event(with_fields("greeting", contact_at=ENVELOPE["occurred_at"]))
    assert event.contact_at == event.occurred_at


# --- time zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("promise", "occurred_at"),
        ("promise", "due_at"),
        ("greeting", "contact_at"),
        ("response", "requested_at"),
    ],
)
def test_naive_timestamp_is_rejected_with_advice(event_type, field):
    error = rejection(with_fields(event_type, **{field: "2024-05-01T06:00:00"}))

    assert error.reason == "schema_violation"
    assert error.detail == f"{field}: {NAIVE_MESSAGE}"


def test_naive_datetime_is_rejected_when_an_emitter_builds_a_model():
    with pytest.raises(ValidationError, match=r"\+00:00 or Z"):
        Promise(**{**GOOD_EVENTS["promise"], "due_at": datetime(2024, 5, 2, 12, 0)})


def test_epoch_number_is_not_a_timestamp_on_the_wire():
    error = rejection(with_fields("delivery", occurred_at=1714548600))
    assert error.reason == "schema_violation"
    assert error.detail.startswith("occurred_at: ")


# --- what is rejected, and why --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"not json", b"\xff\xfe{}", b"[]", b"[1, 2]", b"42", b'"text"', b"null"]
)
def test_anything_but_a_json_object_is_invalid_json(raw):
    assert rejection(raw).reason == "invalid_json"


def test_unknown_type_is_rejected_and_known_types_are_listed():
    error = rejection(with_fields("delivery", type="refund"))

    assert error.reason == "unknown_type"
    assert "'refund'" in error.detail
    assert "greeting, response, promise, delivery" in error.detail


@pytest.mark.parametrize(
    "raw", [without_field("delivery", "type"), b"{}", with_fields("delivery", type=None)]
)
def test_missing_or_non_text_type_is_unknown_type(raw):
    assert rejection(raw).reason == "unknown_type"


def test_a_very_long_type_is_not_echoed_in_full():
    error = rejection(with_fields("delivery", type="x" * 10_000))
    assert error.reason == "unknown_type"
    assert len(error.detail) < 200


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (without_field("promise", "promise_id"), "promise_id"),
        (without_field("delivery", "promise_id"), "promise_id"),
        (with_fields("promise", kind="someday"), "kind"),
        (with_fields("delivery", channel="fax"), "channel"),
        (with_fields("response", priority="whenever"), "priority"),
        (with_fields("delivery", audience="partners"), "audience"),
        (with_fields("delivery", case_id=""), "case_id"),
        (with_fields("delivery", event_id="   "), "event_id"),
        (with_fields("delivery", event_id="e" * 129), "event_id"),
        (with_fields("delivery", team="t" * 65), "team"),
        (with_fields("delivery", team="billing team"), "team"),
        (with_fields("delivery", team="-billing"), "team"),
        (with_fields("delivery", agent_id="a" * 129), "agent_id"),
        (with_fields("delivery", schema_version=0), "schema_version"),
        (with_fields("delivery", occurred_at="yesterday"), "occurred_at"),
    ],
)
def test_schema_violation_names_the_field(raw, field):
    error = rejection(raw)

    assert error.reason == "schema_violation"
    assert error.detail.startswith(f"{field}: ")


def test_extra_field_is_rejected_by_name():
    error = rejection(with_fields("promise", promised_by="me"))

    assert error.reason == "schema_violation"
    assert error.detail.startswith("promised_by: Extra inputs are not permitted")


@pytest.mark.parametrize(
    ("event_type", "field"), [("greeting", "contact_at"), ("response", "requested_at")]
)
def test_customer_time_after_occurred_at_is_rejected(event_type, field):
    error = rejection(with_fields(event_type, **{field: "2024-05-01T09:31:00+02:00"}))

    assert error.reason == "schema_violation"
    assert error.detail == f"{field}: must not be after occurred_at (the time of this event)"


def test_at_most_three_errors_are_reported():
    error = rejection(encode({"type": "promise"}))  # eight required fields missing

    assert error.reason == "schema_violation"
    assert error.detail.count("Field required") == 3
    assert error.detail.endswith("(and 5 more)")


def test_message_over_the_size_limit_is_too_large():
    raw = with_fields("delivery", source="s" * 100)

    error = rejection(raw, max_bytes=len(raw) - 1)
    assert error.reason == "too_large"
    assert str(len(raw)) in error.detail
    assert decode_event(raw, max_bytes=len(raw)).source == "s" * 100


def test_size_limit_counts_utf8_bytes_of_text_input():
    text = json.dumps({**GOOD_EVENTS["delivery"], "source": "é" * 100}, ensure_ascii=False)
    assert rejection(text, max_bytes=len(text) + 50).reason == "too_large"


def test_invalid_event_rejects_a_reason_outside_the_closed_set():
    with pytest.raises(ValueError):
        InvalidEvent("oops", "anything")


# --- emitters: build, serialise, decode -----------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_model_dump_json_round_trips_through_decode(event_type):
    event = decode_event(encode(GOOD_EVENTS[event_type]))
    assert decode_event(event.model_dump_json()) == event


def test_emitter_builds_a_promise_and_the_wire_keeps_the_offset():
    berlin = ZoneInfo("Europe/Berlin")
    promise = Promise(
        event_id="evt-1",
        occurred_at=datetime(2024, 5, 1, 9, 30, tzinfo=berlin),
        case_id="case-42",
        team="billing",
        channel=Channel.PHONE,
        promise_id="p-1",
        due_at=datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc),
        kind=PromiseKind.REFUND,
    )

    wire = json.loads(promise.model_dump_json())
    assert wire["type"] == "promise"
    assert wire["occurred_at"] == "2024-05-01T09:30:00+02:00"
    assert wire["due_at"] == "2024-05-02T12:00:00Z"
    assert decode_event(promise.model_dump_json()) == promise


def test_events_are_immutable():
    event = decode_event(encode(GOOD_EVENTS["delivery"]))
    with pytest.raises(ValidationError):
        event.promise_id = "p-2"


identifiers = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=128
).map(str.strip).filter(bool)
utc_offsets = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timedelta(minutes=minutes))
aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.builds(timezone, utc_offsets),
)


@given(
    event_id=identifiers,
    case_id=identifiers,
    promise_id=identifiers,
    team=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
    channel=st.sampled_from(Channel),
    occurred_at=aware_times,
    due_at=aware_times,
    kind=st.sampled_from(PromiseKind),
)
def test_any_valid_promise_round_trips(**fields):
    promise = Promise(**fields)
    assert decode_event(promise.model_dump_json()) == promise


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(data=st.data())
def test_any_field_value_either_decodes_or_is_rejected_with_a_known_reason(data):
    fields = dict(GOOD_EVENTS[data.draw(st.sampled_from(EVENT_TYPES))])
    field = data.draw(st.sampled_from(sorted(fields)) | st.text(max_size=12))
    fields[field] = data.draw(json_values)
    try:
        decode_event(encode(fields))
    except InvalidEvent as error:  # anything else escaping would crash the consumer
        assert error.reason in REJECT_REASONS


@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_decoded_or_rejected_never_crash(raw):
    try:
        decode_event(raw)
    except InvalidEvent as error:
        assert error.reason in REJECT_REASONS


# --- committed JSON Schemas -----------------------------------------------------------------------


def test_committed_json_schemas_match_the_models():
    expected = generate_schemas()
    committed = {
        path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.schema.json")
    }

    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"schemas/json is out of date (differs: {stale}, not generated: {extra}); "
        "run `python -m schemas.jsonschema` and commit the result"
    )


def test_there_is_one_schema_per_event_type_plus_the_union():
    files = generate_schemas()

    expected_names = [f"{event_type}.schema.json" for event_type in EVENT_TYPES]
    assert sorted(files) == sorted([*expected_names, "event.schema.json"])
    for name, text in files.items():
        schema = json.loads(text)
        assert schema["$id"].endswith(name.removesuffix(".schema.json"))
        assert schema["title"] and schema["description"]
        assert text.endswith("}\n")


def test_schemas_describe_every_field_and_require_type():
    for event_type in EVENT_TYPES:
        schema = json.loads(generate_schemas()[f"{event_type}.schema.json"])
        assert schema["required"][0] == "type"
        assert schema["additionalProperties"] is False
        properties = schema["properties"]
        undocumented = [name for name, prop in properties.items() if not prop.get("description")]
        assert not undocumented, f"{event_type}: add Field(description=...) to {undocumented}"


def test_write_schemas_writes_every_file_and_removes_stale_ones(tmp_path: Path):
    (tmp_path / "retired.schema.json").write_text("{}\n")

    written = write_schemas(tmp_path)

    assert {path.name for path in written} == set(generate_schemas())
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(generate_schemas())


if jsonschema is not None:

    def test_committed_event_schema_accepts_a_good_event_and_rejects_bad_ones():
        schema = json.loads((SCHEMA_DIR / "event.schema.json").read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(schema)
        jsonschema.Draft202012Validator.check_schema(schema)

        for good in GOOD_EVENTS.values():
            validator.validate(good)
        for bad in (
            {**GOOD_EVENTS["promise"], "kind": "someday"},
            {**GOOD_EVENTS["delivery"], "team": "billing team"},
            {key: value for key, value in GOOD_EVENTS["promise"].items() if key != "type"},
            {**GOOD_EVENTS["delivery"], "type": "refund"},
        ):
            assert not validator.is_valid(bad), bad


@pytest.mark.parametrize("score", [0, 6, 4.5, "4", True])
def test_a_feedback_score_outside_1_to_5_or_not_an_integer_is_rejected(score):
    invalid = rejection(with_fields("feedback", score=score))
    assert invalid.reason == "schema_violation"
    assert invalid.detail.startswith("score:")
